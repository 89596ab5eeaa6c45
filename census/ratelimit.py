"""The cluster-wide gate, kept in one ``RateGate`` database row shared by every worker.

``census.gate`` decides (pure); this module applies its decisions to the row under a row lock
(``select_for_update``; on SQLite the write lock taken at BEGIN with ``transaction_mode
IMMEDIATE``), one short transaction each, and logs the breaker's changes.

The database work always runs on a short-lived helper thread with its own connection:

- the caller may be the Playwright thread, whose running asyncio loop makes the ORM raise
  ``SynchronousOnlyOperation``;
- a reservation must commit at once, visible to every other worker, whatever transaction
  the caller's connection is in. (Still, do not wait for a turn inside a transaction on
  SQLite: the caller's write lock would hold the helper's BEGIN IMMEDIATE back.)

Slots are wall-clock times, so hosts sharing the database need synchronised clocks (NTP).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import TypeVar

from django.db import OperationalError, connections, transaction
from django.utils import timezone

from census import events, gate
from census.conf import settings
from census.events import Event
from census.gate import Admission, Closed, GatePolicy, GateState, Slot
from census.models import RateGate as RateGateRow

#: Attempts at a transaction when the row stays locked.
_LOCKED_RETRIES = 5
#: Seconds a gate transaction waits for the row lock on PostgreSQL before giving up.
LOCK_TIMEOUT = 10.0
#: Seconds between looks at the row while a probe is out.
_PROBE_POLL = 0.5
#: Seconds before its slot a waiting request looks whether a block opened the breaker.
_RECHECK_BEFORE = 0.3
DEFAULT_NAME = "census"

T = TypeVar("T")


def policy_from_settings(interval: float | None = None) -> GatePolicy:
    """The gate's numbers from the ``CENSUS_*`` settings, read now."""
    return GatePolicy(
        interval=settings.rate_limit_seconds if interval is None else interval,
        backoff=settings.block_backoff_seconds,
        backoff_max=settings.block_backoff_max_seconds,
        max_retry_after=settings.max_retry_after_seconds,
        probe_lease=float(settings.task_timeout),
    )


class RateGate:
    """One named gate in the ``RateGate`` table; safe to use from any thread or process.

    ``ticketed``: the caller is a deferred lookup coming back at its place on the cursor.
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        interval: float | None = None,
        policy: GatePolicy | None = None,
        ticketed: bool = False,
        using: str = "default",
    ) -> None:
        self.name = name
        self.using = using
        self.ticketed = ticketed
        self._interval = interval
        self._policy = policy

    @property
    def policy(self) -> GatePolicy:
        """Frozen at construction when given, else read from the settings on each use."""
        return self._policy or policy_from_settings(self._interval)

    @property
    def interval(self) -> float:
        return self.policy.interval

    # -- the scraper's side (Gate protocol) --------------------------------------------------

    def peek(self, deadline: datetime) -> Closed | None:
        policy = self.policy
        state = self.state()
        return gate.peek(state, timezone.now(), policy, deadline=deadline, ticketed=self.ticketed)

    def reserve(self, deadline: datetime | None = None) -> Admission:
        """Take the next slot (perhaps as the breaker's probe), or say why not."""
        policy = self.policy

        def change(state: GateState, now: datetime) -> tuple[Admission, GateState]:
            return gate.admit(state, now, policy, deadline=deadline, ticketed=self.ticketed)

        admission = self._update(change)
        if isinstance(admission, Slot) and admission.probe:
            events.emit(Event.BREAKER_PROBE, gate=self.name, at=admission.at.isoformat())
        return admission

    def wait_turn(
        self,
        deadline: datetime | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Admission:
        """Reserve a slot and sleep until it; while a probe is out, wait for its result.

        ``sleep`` lets the Playwright thread keep its event loop turning while it waits.
        """
        while True:
            admission = self.reserve(deadline)
            if isinstance(admission, Slot):
                delay = (admission.at - timezone.now()).total_seconds()
                if delay > _RECHECK_BEFORE and not admission.probe:
                    # Another worker's block may open the breaker while we wait: look once,
                    # shortly before the slot, so the look never delays the request itself.
                    sleep(delay - _RECHECK_BEFORE)
                    state = self.state()
                    if state.breaker_open(timezone.now()):
                        assert state.breaker_until is not None
                        return Closed(state.breaker_until, "breaker_open")
                    delay = (admission.at - timezone.now()).total_seconds()
                if delay > 0:
                    sleep(delay)
                return admission
            if admission.reason != "probe_in_flight":
                return admission
            left = None if deadline is None else (deadline - timezone.now()).total_seconds()
            if left is not None and left <= 0:
                return admission
            sleep(_PROBE_POLL if left is None else min(_PROBE_POLL, left))

    def record(
        self, slot: Slot, *, blocked: bool, answered: bool, retry_after: float | None = None
    ) -> None:
        policy = self.policy
        changed: list[gate.BreakerChange] = []

        def change(state: GateState, now: datetime) -> tuple[GateState, GateState]:
            after, what = gate.record(
                state,
                now,
                policy,
                blocked=blocked,
                answered=answered,
                probe=slot.probe,
                retry_after=retry_after,
            )
            changed.append(what)
            return after, after

        after = self._update(change)
        what = changed[-1] if changed else None
        if what == "opened" and after.breaker_until is not None:
            pause = (after.breaker_until - timezone.now()).total_seconds()
            events.emit(
                Event.BREAKER_OPENED,
                gate=self.name,
                pause_s=round(pause, 3),
                consecutive_blocks=after.consecutive_blocks,
                until=after.breaker_until.isoformat(),
            )
        elif what == "closed":
            events.emit(Event.BREAKER_CLOSED, gate=self.name)

    # -- the pipeline's side ------------------------------------------------------------------

    def place_deferred(self, opens: datetime) -> datetime:
        """The due time for a lookup deferred until ``opens``: its place on the cursor.

        Runs in the caller's transaction (the conclusion holding the lookup's row), so the
        place is taken if and only if the deferral commits. Lock order: lookup, then gate.
        """
        policy = self.policy

        def change(state: GateState, now: datetime) -> tuple[datetime, GateState]:
            return gate.place_deferred(state, now, policy, opens)

        return self._update(change, inline=True)

    def state(self) -> GateState:
        """The row as it is now (a fresh gate's state when there is no row yet)."""

        def read() -> GateState:
            row = RateGateRow.objects.using(self.using).filter(name=self.name).first()
            return _state(row) if row else GateState(next_allowed_at=timezone.now())

        return _off_thread(read, self.using)

    def next_allowed_at(self) -> datetime | None:
        """The row's next slot (None before the first use)."""

        def read() -> datetime | None:
            row = RateGateRow.objects.using(self.using).filter(name=self.name).first()
            return row.next_allowed_at if row else None

        return _off_thread(read, self.using)

    # -- the row ------------------------------------------------------------------------------

    def _update(
        self, change: Callable[[GateState, datetime], tuple[T, GateState]], inline: bool = False
    ) -> T:
        """Run ``change`` on the locked row's state and save the state it returns.

        ``inline``: in the caller's transaction; else committed at once on a helper thread.
        """

        def attempt() -> T:
            with transaction.atomic(using=self.using):
                _bound_lock_wait(self.using)
                row = self._locked_row()
                # Read the clock only once the lock is held: waiting for it takes time.
                before = _state(row)
                result, after = change(before, timezone.now())
                if after != before:
                    for field, value in asdict(after).items():
                        setattr(row, field, value)
                    row.save(using=self.using)
                return result

        # Inside a transaction of the calling thread (a test, or a caller that chose to), a
        # helper's own transaction would wait on SQLite for this one's write lock: join it.
        if inline or connections[self.using].in_atomic_block:
            return attempt()
        return _off_thread(lambda: _retry_locked(attempt), self.using)

    def _locked_row(self) -> RateGateRow:
        # get_or_create inside the transaction: a first use by two workers at once ends with
        # one row, and the loser waits on the winner's lock (PostgreSQL) or on SQLite's write
        # lock, taken at BEGIN with transaction_mode IMMEDIATE.
        row, _ = (
            RateGateRow.objects.using(self.using)
            .select_for_update()
            .get_or_create(name=self.name, defaults={"next_allowed_at": timezone.now()})
        )
        return row


def _state(row: RateGateRow) -> GateState:
    return GateState(
        next_allowed_at=row.next_allowed_at,
        breaker_until=row.breaker_until,
        consecutive_blocks=row.consecutive_blocks,
        probe_until=row.probe_until,
        defer_cursor=row.defer_cursor,
    )


def _bound_lock_wait(using: str) -> None:
    """On PostgreSQL, wait at most ``LOCK_TIMEOUT`` for the row: a frozen holder (a stopped
    process keeping its transaction open) must not block every worker forever."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'")


def _retry_locked(attempt: Callable[[], T]) -> T:
    """Run ``attempt``; retry when the row stays locked (SQLite's "database is locked",
    PostgreSQL's lock timeout)."""
    for tries in range(_LOCKED_RETRIES):
        try:
            return attempt()
        except OperationalError as error:
            text = str(error)
            if ("locked" not in text and "lock timeout" not in text) or (
                tries == _LOCKED_RETRIES - 1
            ):
                raise
            time.sleep(0.05 * (tries + 1))
    raise AssertionError("unreachable")


def _off_thread(work: Callable[[], T], using: str) -> T:
    """Run ``work`` on a fresh thread with its own connection, closed afterwards."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the caller, who re-raises it
            outcome["error"] = error
        finally:
            connections[using].close()

    helper = threading.Thread(target=run, name="census-rate-gate", daemon=True)
    helper.start()
    helper.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
