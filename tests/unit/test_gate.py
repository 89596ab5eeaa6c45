"""The gate's pure policy: spacing, the breaker, probes and the deferral cursor."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from census.gate.protocol import Closed, Slot
from census.gate.rules import (
    SEND_MARGIN,
    BreakerPhase,
    GatePolicy,
    GateState,
    Hold,
    Retake,
    admit,
    confirm,
    peek,
    permit,
    place_deferred,
    record,
)
from census.limits import clamp_seconds

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
POLICY = GatePolicy(interval=5.0, backoff=60, backoff_max=1800, max_retry_after=3600)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def idle() -> GateState:
    return GateState(next_allowed_at=at(-30))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0.0),
        (math.nan, 0.0),
        (-5.0, 0.0),
        (30.0, 30.0),
        (math.inf, 3600.0),
        (1e12, 3600.0),
    ],
)
def test_clamp_seconds(value: float | None, expected: float) -> None:
    """Any wait from outside becomes a finite number of seconds within the cap."""
    assert clamp_seconds(value, 3600.0) == expected


@pytest.mark.parametrize(
    ("next_allowed_at", "slot", "after"),
    [
        (at(-30), at(0), at(5 + SEND_MARGIN)),  # idle: go now
        (at(0), at(0), at(5 + SEND_MARGIN)),
        (at(3), at(3), at(8 + SEND_MARGIN)),  # busy: the reserved time, next one later
    ],
)
def test_admit_spaces_slots(next_allowed_at: datetime, slot: datetime, after: datetime) -> None:
    """A closed breaker admits at the next free slot and moves it one interval on."""
    admission, state = admit(GateState(next_allowed_at=next_allowed_at), T0, POLICY, deadline=None)
    assert admission == Slot(slot)
    assert state.next_allowed_at == after


def test_admit_refuses_a_slot_past_the_deadline_without_taking_it() -> None:
    """Workers queued at the gate past a caller's deadline: closed, nothing reserved."""
    state = GateState(next_allowed_at=at(40))
    admission, after = admit(state, T0, POLICY, deadline=at(30))
    assert admission == Closed(at(40), "rate_backlog")
    assert after == state


@pytest.mark.parametrize(
    ("blocks", "retry_after", "pause"),
    [
        (1, None, 60),
        (2, None, 120),
        (3, None, 240),
        (6, None, 1800),  # 60 * 32 = 1920, capped
        (1000, None, 1800),
        (1, 10.0, 10),  # a 429's Retry-After is used as given
        (1, 1e12, 3600),  # and clamped
        (1, math.inf, 3600),
    ],
)
def test_pause_escalates_and_is_capped(
    blocks: int, retry_after: float | None, pause: float
) -> None:
    """The breaker's pause doubles per consecutive block up to the maximum."""
    assert POLICY.backoff_for(blocks, retry_after) == pause


def test_a_block_opens_the_breaker_and_nothing_is_admitted_while_open() -> None:
    """After a block every caller is refused until the pause is over."""
    state, change = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    assert change == "opened"
    assert state.breaker_until == at(60) and state.consecutive_blocks == 1
    for now in (at(1), at(30), at(59.9)):
        admission, _ = admit(state, now, POLICY, deadline=None, ticketed=True)
        assert admission == Closed(at(60), "breaker_open")


def test_after_the_pause_exactly_one_probe_goes_and_the_rest_wait() -> None:
    """Once the pause ends one caller probes; others see the probe in flight."""
    state, _ = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    first, state = admit(state, at(61), POLICY, deadline=None)
    assert first == Slot(at(61), probe=True)
    second, _ = admit(state, at(62), POLICY, deadline=None)
    assert isinstance(second, Closed) and second.reason == "probe_in_flight"
    # peek does not count a probe in flight as closed: its answer may come soon.
    assert peek(state, at(62), POLICY, deadline=at(100)) is None


def test_an_answered_probe_closes_the_breaker_and_resets_the_pause() -> None:
    """The probe's answer lets requests flow and the next block pauses 60 s again."""
    state, _ = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    probe, state = admit(state, at(61), POLICY, deadline=None)
    assert isinstance(probe, Slot) and probe.probe
    state, change = record(state, at(63), POLICY, blocked=False, answered=True, probe=True)
    assert change == "closed"
    assert state.breaker_until is None and state.consecutive_blocks == 0
    admission, _ = admit(state, at(70), POLICY, deadline=None)
    assert admission == Slot(at(70))


def test_a_blocked_probe_reopens_with_the_next_pause() -> None:
    """A probe that is blocked doubles the pause."""
    state, _ = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    _, state = admit(state, at(61), POLICY, deadline=None)
    state, change = record(state, at(62), POLICY, blocked=True, answered=False, probe=True)
    assert change == "opened"
    assert state.breaker_until == at(62 + 120) and state.consecutive_blocks == 2
    assert state.probe_until is None


def test_a_probe_without_an_answer_lets_another_caller_probe() -> None:
    """A probe that timed out releases its lease; the breaker stays half-open."""
    state, _ = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    _, state = admit(state, at(61), POLICY, deadline=None)
    state, change = record(state, at(70), POLICY, blocked=False, answered=False, probe=True)
    assert change == "probe_released"
    admission, _ = admit(state, at(71), POLICY, deadline=None)
    assert isinstance(admission, Slot) and admission.probe


def test_a_dead_probe_holder_is_replaced_after_its_lease() -> None:
    """A probe whose worker died blocks others only until its lease ends."""
    state, _ = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    _, state = admit(state, at(61), POLICY, deadline=None)
    assert state.probe_until == at(61 + POLICY.probe_lease)
    admission, _ = admit(state, at(62 + POLICY.probe_lease), POLICY, deadline=None)
    assert isinstance(admission, Slot) and admission.probe


def test_stragglers_neither_close_nor_escalate_an_open_breaker() -> None:
    """Requests admitted before the block do not close the breaker or double its pause."""
    state, _ = record(idle(), T0, POLICY, blocked=True, answered=False, probe=False)
    after, change = record(state, at(1), POLICY, blocked=False, answered=True, probe=False)
    assert (after, change) == (state, None)
    after, change = record(state, at(2), POLICY, blocked=True, answered=False, probe=False)
    assert (after, change) == (state, None)


def test_deferred_lookups_are_spread_over_the_gate_slots() -> None:
    """Ten lookups deferred to one opening get ten consecutive slots, in order."""
    state = replace(idle(), breaker_until=at(60))
    dues = []
    for _ in range(10):
        due, state = place_deferred(state, T0, POLICY, at(60))
        dues.append(due)
    gaps = {round((b - a).total_seconds(), 6) for a, b in zip(dues, dues[1:], strict=False)}
    assert dues[0] == at(60)
    assert gaps == {5 + SEND_MARGIN}


def test_fresh_callers_queue_behind_deferred_lookups() -> None:
    """A new registration arriving while deferred lookups wait goes to the back of the line."""
    state = idle()
    due, state = place_deferred(state, T0, POLICY, at(60))
    fresh, _ = admit(state, at(61), POLICY, deadline=None)
    assert fresh == Closed(at(60 + 5 + SEND_MARGIN), "deferred_ahead")
    ticketed, _ = admit(state, due, POLICY, deadline=None, ticketed=True)
    assert ticketed == Slot(due)


# -- the send: permit at the slot, confirm after the request left -----------------------------

SEND = GatePolicy(interval=1.0, send_lease=10.0, late_after=0.5)


def test_a_request_may_leave_only_an_interval_after_the_previous_confirmed_send() -> None:
    """Spacing counts from when the previous request actually left, not from its grant."""
    state = GateState(next_allowed_at=at(0))
    first, state = admit(state, T0, SEND, deadline=None)
    second, state = admit(state, T0, SEND, deadline=None)
    assert isinstance(first, Slot) and isinstance(second, Slot)
    assert second.at == at(1 + SEND_MARGIN)
    going, state = permit(state, at(0.3), SEND, first, deadline=None)  # woke 0.3 s late
    assert isinstance(going, Slot) and going.lease_until == at(10.3)
    state = confirm(state, at(0.31), SEND, going)
    assert state.last_sent_at == at(0.31) and state.sending_until is None
    # At its granted slot the second request is held until the first's send + interval.
    held, _ = permit(state, second.at, SEND, second, deadline=None)
    assert isinstance(held, Hold) and held.wait == pytest.approx(0.31)
    sendable = at(1.31 + SEND_MARGIN)
    going2, _ = permit(state, sendable, SEND, second, deadline=None)
    assert isinstance(going2, Slot) and going2.at == sendable


def test_nothing_leaves_while_another_request_holds_the_send_lease() -> None:
    """A permitted request not yet confirmed holds every other; a lapsed lease counts as sent
    at its end."""
    state = GateState(next_allowed_at=at(0))
    first, state = admit(state, T0, SEND, deadline=None)
    second, state = admit(state, T0, SEND, deadline=None)
    assert isinstance(first, Slot) and isinstance(second, Slot)
    going, state = permit(state, at(0), SEND, first, deadline=None)
    assert isinstance(going, Slot)
    held, _ = permit(state, at(5), SEND, second, deadline=None)
    assert isinstance(held, Hold) and held.wait <= 0.02 + 1e-9
    # Its holder vanished: the lease ended at 10 s, so the next may go at 11 s (+ margin).
    held, _ = permit(state, at(10.5), SEND, second, deadline=None)
    assert isinstance(held, Hold) and held.wait == pytest.approx(0.5 + SEND_MARGIN)
    late, _ = permit(state, at(11 + SEND_MARGIN), SEND, second, deadline=None)
    assert isinstance(late, Slot)


def test_a_request_that_wakes_too_late_takes_a_new_turn() -> None:
    """Later than late_after past the moment it could go: Retake, nothing changes."""
    state = GateState(next_allowed_at=at(0))
    first, state = admit(state, T0, SEND, deadline=None)
    assert isinstance(first, Slot)
    retake, after = permit(state, at(0.8), SEND, first, deadline=None)
    assert isinstance(retake, Retake) and retake.late_by == pytest.approx(0.8)
    assert after == state


def test_a_block_recorded_after_the_grant_stops_the_send() -> None:
    """The breaker is checked at the send, not only at the grant."""
    state = GateState(next_allowed_at=at(0))
    slot, state = admit(state, T0, SEND, deadline=None)
    assert isinstance(slot, Slot)
    state, _ = record(state, at(0.1), SEND, blocked=True, answered=False, probe=False)
    closed, _ = permit(state, at(1), SEND, slot, deadline=None)
    assert isinstance(closed, Closed) and closed.reason == "breaker_open"


def test_a_hold_past_the_deadline_is_refused() -> None:
    """A request that could leave only after its deadline is told so (rate_backlog)."""
    state = GateState(next_allowed_at=at(0), last_sent_at=at(0))
    slot = Slot(at(0.5))
    closed, _ = permit(state, at(0.5), SEND, slot, deadline=at(0.8))
    assert isinstance(closed, Closed) and closed.reason == "rate_backlog"
    assert closed.wait == pytest.approx(0.5 + SEND_MARGIN)


def test_a_stale_confirm_leaves_the_current_lease_alone() -> None:
    """A confirm whose lease lapsed moves last_sent_at on but does not free another's lease."""
    mine = Slot(at(0), lease_until=at(10))
    state = GateState(next_allowed_at=at(12), last_sent_at=at(-5), sending_until=at(21))
    after = confirm(state, at(11.5), SEND, mine)
    assert after.sending_until == at(21) and after.last_sent_at == at(11.5)


def test_the_breaker_phase_is_decided_in_one_place() -> None:
    """``GateState.phase``: closed without a pause, open during it, probing while the probe's
    lease runs, half-open after; when each phase ends by itself; which ones hold traffic."""
    fresh = GateState(next_allowed_at=T0)
    paused = replace(fresh, breaker_until=T0 + timedelta(seconds=60))
    probing = replace(paused, probe_until=T0 + timedelta(seconds=90))
    cases = [
        (fresh, T0, BreakerPhase.CLOSED, None),
        (paused, T0, BreakerPhase.OPEN, paused.breaker_until),
        (paused, T0 + timedelta(seconds=61), BreakerPhase.HALF_OPEN, paused.breaker_until),
        (probing, T0 + timedelta(seconds=61), BreakerPhase.PROBING, probing.probe_until),
        (probing, T0 + timedelta(seconds=91), BreakerPhase.HALF_OPEN, probing.breaker_until),
    ]
    for state, now, phase, until in cases:
        assert (state.phase(now), state.phase_until(now)) == (phase, until)
    assert {p for p in BreakerPhase if p.holds_traffic} == {
        BreakerPhase.OPEN,
        BreakerPhase.PROBING,
    }
