"""Database operations that survive a dropped or stalled connection (census.database), and
the gate's behaviour when its database fails (census.gate.waiter)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from structlog.testing import capture_logs

from census import database
from census.gate import waiter
from census.gate.protocol import Closed, Slot
from census.gate.rules import GatePolicy
from census.gate.store import GateInTransaction, GateStore
from census.gate.waiter import GateWaiter


def test_a_dropped_connection_is_retried_until_the_step_succeeds() -> None:
    """Two transient failures, then success: the step's value, two database_retry events."""
    calls: list[int] = []
    resets: list[int] = []

    def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "done"

    with capture_logs() as logs:
        value = database.retrying(
            step, operation="report", reset=lambda: resets.append(1), sleep=lambda s: None
        )
    assert value == "done" and len(calls) == 3 and len(resets) == 2
    retries = [e for e in logs if e["event"] == "database_retry"]
    assert [e["operation"] for e in retries] == ["report", "report"]


def test_a_retry_inside_an_attempt_names_its_operation_and_keeps_the_lookups_step() -> None:
    """``database_retry`` says which operation retried (``operation``); the lookup's ``step``
    bound to the attempt's lines is not overwritten by it."""
    import structlog

    from census import events

    calls: list[int] = []

    def claim() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise OperationalError("server closed the connection unexpectedly")
        return "claimed"

    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        events.about(7, 3),
    ):
        database.retrying(claim, operation="claim", reset=lambda: None, sleep=lambda s: None)
    [retry] = [e for e in logs if e["event"] == "database_retry"]
    assert (retry["lookup_id"], retry["step"], retry["operation"]) == (7, 3, "claim")


def test_retries_are_bounded() -> None:
    """A database that stays down: the last error is raised once the time is spent."""
    clock = {"now": 0.0}

    def sleep(seconds: float) -> None:
        clock["now"] += seconds

    def down() -> None:
        raise OperationalError("connection refused")

    real = time.monotonic
    try:
        time.monotonic = lambda: clock["now"]  # type: ignore[assignment]
        with pytest.raises(OperationalError):
            database.retrying(down, operation="claim", seconds=3.0, reset=lambda: None, sleep=sleep)
    finally:
        time.monotonic = real  # type: ignore[assignment]
    assert 1.0 <= clock["now"] <= 3.0  # backing off, and never past the bound


@pytest.mark.django_db
def test_no_retry_inside_a_transaction() -> None:
    """Inside a transaction the earlier writes died with the connection: fail at once."""
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise OperationalError("terminating connection due to administrator command")

    with pytest.raises(OperationalError):
        database.retrying(step, operation="claim", reset=lambda: None, sleep=lambda s: None)
    assert calls == [1]


@pytest.mark.django_db(transaction=True)
def test_a_stalled_helper_is_left_behind_and_the_next_call_gets_a_new_one() -> None:
    """A call that gets no answer in time raises DatabaseStalled; the next call still works."""
    helper = database.Helper()
    with pytest.raises(database.DatabaseStalled):
        helper.call(lambda: time.sleep(2.0), timeout=0.2)
    assert helper.call(lambda: "answered", timeout=5.0) == "answered"
    helper.close()


@pytest.mark.django_db(transaction=True)
def test_the_helper_reconnects_after_its_connection_is_terminated() -> None:
    """pg_terminate_backend of the helper's connection: the next gate call reconnects."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's (runs in ./test's PostgreSQL pass)")
    helper = database.helper()

    def backend_pid() -> int:
        with database.connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    before = helper.call(backend_pid)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [before])
    with capture_logs() as logs:
        after = helper.retrying(backend_pid, operation="gate_read")
    assert after != before
    assert [e["operation"] for e in logs if e["event"] == "database_retry"] == ["gate_read"]
    # The helper's session carries its timeouts.
    timeout = helper.call(lambda: _setting("statement_timeout"))
    assert timeout == f"{int(database.STATEMENT_TIMEOUT)}s"


def _setting(name: str) -> str:
    with database.connections["default"].cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return str(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_reserving_inside_a_transaction_is_refused() -> None:
    """A reservation made in the caller's transaction would be invisible to other workers."""
    gate = GateWaiter("in-transaction", interval=1.0, store=GateStore("in-transaction"))
    with transaction.atomic(), pytest.raises(GateInTransaction):
        gate.reserve()


class BrokenStore(GateStore):
    """A store whose database is down for writes."""

    def __init__(self) -> None:
        super().__init__("broken", inline=False)
        self.applied = 0

    def apply(self, change: Callable[..., Any], *, step: str, seconds: float = 0.0) -> Any:
        self.applied += 1
        raise OperationalError("the database is down")


def test_a_block_that_cannot_be_recorded_stops_this_process_sending(monkeypatch: Any) -> None:
    """The breaker row could not be written: this process sends nothing for the pause."""
    monkeypatch.setattr(waiter, "_local_hold", {"until": 0.0})
    store = BrokenStore()
    gate = GateWaiter("broken", policy=GatePolicy(interval=1.0, backoff=60.0), store=store)
    with capture_logs() as logs:
        gate.record(Slot(at=timezone.now()), blocked=True, answered=False)
    assert [e["event"] for e in logs] == ["gate_record_failed"]
    applied = store.applied
    refused = gate.reserve(within=10.0)
    assert isinstance(refused, Closed) and refused.reason == "breaker_open"
    assert refused.wait > 50  # the first block's pause (60 s by default)
    assert store.applied == applied  # refused here, without asking the database
    # Another gate object in this process (the next lookup) is refused too.
    assert isinstance(GateWaiter("broken", interval=1.0, store=store).peek(10.0), Closed)
