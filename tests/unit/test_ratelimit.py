"""The database-backed gate: the shared row, the breaker's events, and competing processes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from structlog.testing import capture_logs

from census.gate.protocol import Closed, Slot
from census.gate.rules import SEND_MARGIN, GatePolicy
from census.gate.waiter import GateWaiter
from census.models import RateGate as RateGateRow

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


@pytest.mark.django_db(transaction=True)
def test_first_use_creates_the_row_and_goes_at_once() -> None:
    """The first caller gets a slot now and the row holds the next one an interval later."""
    gate = GateWaiter("first", interval=5.0)
    before = datetime.now(UTC)
    admission = gate.wait_turn()
    assert isinstance(admission, Slot) and not admission.probe
    assert admission.at >= before
    row = RateGateRow.objects.get(name="first")
    assert row.next_allowed_at > datetime.now(UTC) + seconds(4)


@pytest.mark.django_db(transaction=True)
def test_turns_in_one_process_are_spaced() -> None:
    """Consecutive turns are at least one interval apart."""
    gate = GateWaiter("spaced", interval=0.3)
    times = []
    for _ in range(4):
        slot = gate.wait_turn()
        assert isinstance(slot, Slot)
        times.append(time.time())
        gate.sent(slot)
    assert all(b - a >= 0.3 for a, b in zip(times, times[1:], strict=False))


@pytest.mark.django_db(transaction=True)
@override_settings(CENSUS_RATE_LIMIT_SECONDS=0.4)
def test_interval_comes_from_settings_at_call_time() -> None:
    """Without a frozen policy the gate reads CENSUS_RATE_LIMIT_SECONDS on each use."""
    gate = GateWaiter("settings")
    assert gate.interval == 0.4
    with override_settings(CENSUS_RATE_LIMIT_SECONDS=2.5):
        assert gate.interval == 2.5


@pytest.mark.django_db(transaction=True)
def test_a_slot_past_the_deadline_is_refused_and_not_taken() -> None:
    """A caller whose deadline comes before the next slot is told when it opens."""
    gate = GateWaiter("deadline", interval=10.0)
    gate.wait_turn()
    before = gate.next_allowed_at()
    admission = gate.wait_turn(within=2.0)
    assert isinstance(admission, Closed) and admission.reason == "rate_backlog"
    assert admission.until == before
    assert 7.0 < admission.wait <= 10.0 + SEND_MARGIN  # relative seconds, no host clock
    assert gate.next_allowed_at() == before


@pytest.mark.django_db(transaction=True)
def test_block_opens_the_breaker_for_everyone_then_a_probe_closes_it() -> None:
    """A recorded block closes the gate for all callers; the answered probe reopens it."""
    policy = GatePolicy(interval=0.0, backoff=0.5, backoff_max=10)
    gate, other = GateWaiter("breaker", policy=policy), GateWaiter("breaker", policy=policy)
    with capture_logs() as logs:
        slot = gate.wait_turn()
        assert isinstance(slot, Slot)
        gate.record(slot, blocked=True, answered=False)
        refused = other.reserve()
        assert isinstance(refused, Closed) and refused.reason == "breaker_open"
        time.sleep(max((refused.until - datetime.now(UTC)).total_seconds(), 0) + 0.05)
        probe = other.wait_turn()
        assert isinstance(probe, Slot) and probe.probe
        other.record(probe, blocked=False, answered=True)
        assert isinstance(gate.reserve(), Slot)
    names = [e["event"] for e in logs]
    assert names == ["breaker_opened", "breaker_probe", "breaker_closed"]
    assert logs[0]["consecutive_blocks"] == 1 and 0 < logs[0]["backoff_s"] <= 0.5


@pytest.mark.django_db(transaction=True)
def test_deferrals_take_consecutive_places() -> None:
    """place_deferred hands out one slot per deferred lookup from the opening on."""
    gate = GateWaiter("cursor", interval=2.0)
    waits = [gate.place_deferred(30.0) for _ in range(3)]
    assert None not in waits
    assert waits[0] == pytest.approx(30.0, abs=0.5)
    # Each later call reads the clock later: the places are 2 s apart on the gate's clock.
    ends = [w + 0.0 for w in waits if w is not None]
    assert ends[1] > ends[0] + 1.5 and ends[2] > ends[1] + 1.5


@pytest.mark.django_db(transaction=True)
def test_a_deferral_past_its_bound_takes_no_place() -> None:
    """However long the cursor, a place past the lookup's bound is refused and not taken."""
    gate = GateWaiter("bounded", interval=60.0)
    assert gate.place_deferred(0.0, at_most=100.0) is not None
    assert gate.place_deferred(0.0, at_most=100.0) is not None  # 60 s on
    cursor = gate.state().defer_cursor
    assert gate.place_deferred(0.0, at_most=100.0) is None  # 120 s on: past the bound
    assert gate.state().defer_cursor == cursor


@pytest.mark.django_db(transaction=True)
def test_usable_where_an_asyncio_loop_runs() -> None:
    """The Playwright thread runs a loop: inline ORM calls there raise SynchronousOnlyOperation."""

    async def inside_loop() -> object:
        return GateWaiter("loop", interval=0.1).wait_turn()

    assert isinstance(asyncio.run(inside_loop()), Slot)
    assert RateGateRow.objects.filter(name="loop").exists()
