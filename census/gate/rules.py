"""The cluster-wide gate in front of the census site: rate spacing plus a circuit breaker.

Pure policy: a ``GateState`` and a clock value in, a decision and the next state out. The
store (``census.gate.store``) applies these to the shared row under its lock, with ``now`` read
from the database's clock; the waiter (``census.gate.waiter.GateWaiter``) sleeps between them; the
scraper sees only the ``Gate`` protocol, which speaks in relative seconds. No Django, no I/O.

- **Spacing, measured at the send.** Requests get consecutive slots ``interval`` apart
  (``admit``). At its slot a request asks to go (``permit``): it may leave only ``interval``
  after the previous request was confirmed sent (``confirm``), and never while another
  request is leaving (holding its send lease). A request that wakes later than
  ``late_after`` past the moment it could have gone takes a new turn instead of going late.
- **Breaker.** A block (F5 page, 403, 429) opens it for a backoff: the 429's ``Retry-After``
  when given (clamped), else ``backoff`` seconds doubled per consecutive block up to
  ``backoff_max``. While it is open nothing is admitted. When the backoff is over exactly one
  request, the probe, is admitted; the others wait for it. An answered probe closes the
  breaker (and resets the backoff); a blocked probe reopens it with the next backoff.
- **Site changed.** An answer in no known shape (``unexpected_page``) counts; an answer in
  a known shape (found, not found, cancelled) resets the count. ``site_changed_after`` of
  them in a row open the breaker for ``site_probe_every`` seconds, with the signature of
  the answer that opened it: the site has changed and attempts would only be spent on it.
  Then one probe goes out per period; a probe answered in a known shape closes the breaker, one
  answered in no known shape keeps it open another period, and a blocked one hands over
  to the block's backoff. Requests refused meanwhile are deferred (not charged) as with a block.
- **Deferral.** A caller that cannot be admitted before its deadline is told when the gate
  opens (``Closed``). The pipeline then places the lookup on the deferral cursor, one slot per
  deferred lookup, so that they do not all fire at once when the breaker closes; fresh callers
  arriving while the cursor is ahead queue behind it (deferred lookups keep their place).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from census.gate.protocol import Admission, Closed, ClosedReason, Slot
from census.limits import MAX_RETRY_AFTER_SECONDS, clamp_seconds

#: Seconds added to the limit between two sends. The limit is enforced at the send
#: (``permit`` against the previous request's confirmed send time), but the confirmation is
#: read when the browser says it let the request go, and its bytes can reach the site later
#: (Chromium's network process, or the site's own stamp, starved of CPU). Without a margin
#: tests/integration/test_scale.py (two clusters, two Chromiums and two spinning processes on two
#: cores, 1 s limit) saw two requests 0.957 s apart at the site; with 0.04 s the closest was
#: 1.069 s. At a 1 s limit it keeps 96 % of the site's capacity; at the default 5 s, 99 %.
SEND_MARGIN = 0.04

#: Seconds a refusal for the operator's pause asks the caller to wait before it looks again.
PAUSE_RECHECK = 30.0


@dataclass(frozen=True, kw_only=True)
class GatePolicy:
    """The gate's numbers, frozen when the gate is built (settings are read by the caller)."""

    #: Minimum seconds between two census requests.
    interval: float
    #: Backoff after the first block of a spell; doubles per consecutive block.
    backoff: float = 60.0
    backoff_max: float = 1800.0
    #: Longest backoff any ``Retry-After`` may impose.
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS
    #: Seconds a probe may stay out before another caller may probe (its holder died).
    probe_lease: float = 120.0
    #: Seconds a permitted request may take to confirm that it left; past that its holder is
    #: presumed gone, and its send is taken to have happened at the end of the lease.
    send_lease: float = 10.0
    #: A request later than this past the moment it could have gone takes a new turn.
    late_after: float = 0.5
    #: Answers in no known shape in a row that make the site count as changed (0: never).
    site_changed_after: int = 5
    #: Seconds between two probes while the site counts as changed.
    site_probe_every: float = 300.0

    @property
    def spacing(self) -> timedelta:
        return timedelta(seconds=self.interval + SEND_MARGIN if self.interval > 0 else 0.0)

    def backoff_for(self, consecutive_blocks: int, retry_after: float | None) -> float:
        """Seconds the breaker stays open after the ``consecutive_blocks``-th block."""
        if retry_after is not None:
            return clamp_seconds(retry_after, self.max_retry_after)
        exponent = min(max(consecutive_blocks - 1, 0), 32)  # 2**32 * 60 s is past any cap
        return clamp_seconds(self.backoff * 2**exponent, max(self.backoff_max, self.backoff))


class BreakerPhase(StrEnum):
    """Where the breaker stands; decided here, once (``GateState.phase``), and read as a
    value by ``admit``, ``permit``, the stats and the bulk feeder."""

    #: No backoff: requests go at the rate.
    CLOSED = "closed"
    #: Paused after a block, until ``breaker_until``: nothing goes.
    OPEN = "open"
    #: The backoff is over and the probe is out (until ``probe_until``): the others wait.
    PROBING = "probing"
    #: The backoff is over; the next request admitted is the probe.
    HALF_OPEN = "half_open"

    @property
    def holds_traffic(self) -> bool:
        """Nothing but a probe may go: feeding more work now only defers it."""
        return self in (BreakerPhase.OPEN, BreakerPhase.PROBING)


@dataclass(frozen=True, kw_only=True)
class GateState:
    """What the shared gate row holds."""

    next_allowed_at: datetime
    breaker_until: datetime | None = None
    consecutive_blocks: int = 0
    probe_until: datetime | None = None
    defer_cursor: datetime | None = None
    #: When the last request was confirmed sent (its holder's ``confirm``).
    last_sent_at: datetime | None = None
    #: While set and in the future, a permitted request is leaving (its send lease).
    sending_until: datetime | None = None
    #: Set while an operator has paused all census traffic (``census.gate.pause``).
    paused_at: datetime | None = None
    #: Answers in no known shape since the last answer in a known shape.
    unexpected_streak: int = 0
    #: Set while the site counts as changed: the breaker is open for that, not for a block.
    site_changed_at: datetime | None = None
    #: The signature of the answer that opened the site-changed breaker.
    site_signature: str = ""

    def phase(self, now: datetime) -> BreakerPhase:
        if self.breaker_until is None:
            return BreakerPhase.CLOSED
        if now < self.breaker_until:
            return BreakerPhase.OPEN
        if self.probe_until is not None and now < self.probe_until:
            return BreakerPhase.PROBING
        return BreakerPhase.HALF_OPEN

    def phase_until(self, now: datetime) -> datetime | None:
        """When the current phase ends by itself (None: it does not)."""
        phase = self.phase(now)
        if phase is BreakerPhase.PROBING:
            return self.probe_until
        return None if phase is BreakerPhase.CLOSED else self.breaker_until


@dataclass(frozen=True)
class Hold:
    """Not yet: ask again in ``wait`` seconds (the previous request left too recently, or is
    leaving now)."""

    wait: float


@dataclass(frozen=True)
class Retake:
    """Too late for this slot: take a new turn (``admit``) instead of going out late."""

    late_by: float


Permission = Slot | Hold | Retake | Closed


def _open_reason(state: GateState) -> ClosedReason:
    return "site_changed" if state.site_changed_at is not None else "breaker_open"


def _closed(until: datetime, reason: ClosedReason, now: datetime) -> Closed:
    return Closed(until, reason, wait=max((until - now).total_seconds(), 0.0))


def _slot(at: datetime, now: datetime, *, probe: bool = False) -> Slot:
    return Slot(at, probe=probe, wait=max((at - now).total_seconds(), 0.0))


def admit(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    *,
    deadline: datetime | None,
    ticketed: bool = False,
) -> tuple[Admission, GateState]:
    """Reserve the next slot for a request, or say why not; ``ticketed``: a deferred lookup."""
    if state.paused_at is not None:
        return _closed(now + timedelta(seconds=PAUSE_RECHECK), "paused", now), state
    phase = state.phase(now)
    if phase is BreakerPhase.OPEN:
        assert state.breaker_until is not None
        return _closed(state.breaker_until, _open_reason(state), now), state
    if phase is BreakerPhase.PROBING:
        assert state.probe_until is not None
        return _closed(state.probe_until, "probe_in_flight", now), state
    if phase is BreakerPhase.HALF_OPEN:
        slot = max(now, state.next_allowed_at)
        if deadline is not None and slot > deadline:
            return _closed(slot, "rate_backlog", now), state
        probe_until = slot + timedelta(seconds=policy.probe_lease)
        return _slot(slot, now, probe=True), replace(
            state, next_allowed_at=slot + policy.spacing, probe_until=probe_until
        )
    if not ticketed and state.defer_cursor is not None and state.defer_cursor > now:
        return _closed(state.defer_cursor, "deferred_ahead", now), state
    slot = max(now, state.next_allowed_at)
    if deadline is not None and slot > deadline:
        return _closed(slot, "rate_backlog", now), state
    return _slot(slot, now), replace(state, next_allowed_at=slot + policy.spacing)


def permit(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    slot: Slot,
    *,
    deadline: datetime | None,
) -> tuple[Permission, GateState]:
    """At its slot, may the request leave now? The rate limit is enforced here, at the send.

    ``Slot`` (with ``lease_until``): go now, then ``confirm``. ``Hold``: ask again later.
    ``Retake``: this request woke too late for its slot. ``Closed``: a block opened the
    breaker meanwhile, or the deadline comes before the request could go.
    """
    if state.paused_at is not None:  # paused since its admission: not even a probe goes
        return _closed(now + timedelta(seconds=PAUSE_RECHECK), "paused", now), state
    if not slot.probe and state.phase(now) is BreakerPhase.OPEN:
        assert state.breaker_until is not None
        return _closed(state.breaker_until, _open_reason(state), now), state
    if policy.interval <= 0:
        return replace(slot, wait=0.0, lease_until=None), state
    earliest = slot.at
    if state.last_sent_at is not None:
        earliest = max(earliest, state.last_sent_at + policy.spacing)
    if state.sending_until is not None:
        if now < state.sending_until:  # another request is leaving: wait for its confirm
            if deadline is not None and now >= deadline:
                return _closed(state.sending_until, "rate_backlog", now), state
            left = (state.sending_until - now).total_seconds()
            return Hold(min(left, _SENDING_POLL)), state
        # Its holder never confirmed: its request left by the end of its lease, if at all.
        earliest = max(earliest, state.sending_until + policy.spacing)
    if now < earliest:
        if deadline is not None and earliest > deadline:
            return _closed(earliest, "rate_backlog", now), state
        return Hold((earliest - now).total_seconds()), state
    late_by = (now - earliest).total_seconds()
    if late_by > policy.late_after and not slot.probe:
        return Retake(late_by), state
    lease_until = now + timedelta(seconds=policy.send_lease)
    going = Slot(now, probe=slot.probe, lease_until=lease_until)
    return going, replace(
        state,
        sending_until=lease_until,
        next_allowed_at=max(state.next_allowed_at, now + policy.spacing),
    )


def confirm(state: GateState, now: datetime, policy: GatePolicy, slot: Slot) -> GateState:
    """The request permitted in ``slot`` has left (or will never leave): stamp it at ``now``.

    ``now`` is read after the send, so the next request's spacing counts from a time no
    earlier than the real one. A stale confirm (its lease expired and another request took
    one) still moves ``last_sent_at`` forward, but leaves the other lease alone.
    """
    if slot.lease_until is None:
        return state
    last = now if state.last_sent_at is None else max(state.last_sent_at, now)
    sending = None if state.sending_until == slot.lease_until else state.sending_until
    return replace(
        state,
        last_sent_at=last,
        sending_until=sending,
        next_allowed_at=max(state.next_allowed_at, now + policy.spacing),
    )


def peek(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    *,
    deadline: datetime | None,
    ticketed: bool = False,
) -> Closed | None:
    """Would ``admit`` refuse? A probe in flight is not a refusal yet: it may answer soon."""
    admission, _ = admit(state, now, policy, deadline=deadline, ticketed=ticketed)
    if isinstance(admission, Closed) and admission.reason != "probe_in_flight":
        return admission
    return None


#: Seconds between looks while another request holds the send lease.
_SENDING_POLL = 0.02

#: What a request's answer did to the breaker.
BreakerChange = (
    Literal["opened", "closed", "probe_released", "site_changed", "site_recovered"] | None
)


def record(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    *,
    blocked: bool,
    answered: bool,
    probe: bool,
    retry_after: float | None = None,
    unexpected: str = "",
) -> tuple[GateState, BreakerChange]:
    """Apply one request's fate: ``blocked`` by the site, ``answered`` by it, answered in no
    known shape (``unexpected``: its signature), or none of these."""
    if blocked:
        if state.phase(now) is BreakerPhase.OPEN and not probe:
            return state, None  # a straggler admitted before the breaker opened
        blocks = state.consecutive_blocks + 1
        until = now + timedelta(seconds=policy.backoff_for(blocks, retry_after))
        if state.breaker_until is not None and state.breaker_until > until:
            until = state.breaker_until
        # A block is the site's protection, not a change of its pages: the block's backoff
        # takes over (the count of unexpected answers stays, for when it is over).
        return replace(
            state,
            breaker_until=until,
            consecutive_blocks=blocks,
            probe_until=None,
            site_changed_at=None,
            site_signature="",
        ), "opened"
    if answered:
        if state.breaker_until is None:
            return replace(state, consecutive_blocks=0, unexpected_streak=0), None
        if probe:
            recovered = state.site_changed_at is not None
            return replace(
                state,
                breaker_until=None,
                consecutive_blocks=0,
                probe_until=None,
                unexpected_streak=0,
                site_changed_at=None,
                site_signature="",
            ), "site_recovered" if recovered else "closed"
        return state, None
    if unexpected:
        return _record_unexpected(state, now, policy, probe=probe, signature=unexpected)
    if probe and state.probe_until is not None:
        return replace(state, probe_until=None), "probe_released"
    return state, None


def _record_unexpected(
    state: GateState, now: datetime, policy: GatePolicy, *, probe: bool, signature: str
) -> tuple[GateState, BreakerChange]:
    """An answer in no known shape: count it; enough in a row mean the site has changed."""
    streak = state.unexpected_streak + 1
    period = timedelta(seconds=max(policy.site_probe_every, 0.0))
    if state.site_changed_at is not None:
        if probe:  # the site is still changed: the next probe one period from now
            return replace(
                state, unexpected_streak=streak, breaker_until=now + period, probe_until=None
            ), None
        return replace(state, unexpected_streak=streak), None
    if not _site_counts_as_changed(state, now, policy, streak=streak, probe=probe):
        released = probe and state.probe_until is not None
        after = replace(
            state, unexpected_streak=streak, probe_until=None if released else state.probe_until
        )
        return after, "probe_released" if released else None
    until = now + period
    if state.breaker_until is not None and state.breaker_until > until:
        until = state.breaker_until
    return replace(
        state,
        unexpected_streak=streak,
        breaker_until=until,
        probe_until=None,
        site_changed_at=now,
        site_signature=signature,
    ), "site_changed"


def _site_counts_as_changed(
    state: GateState, now: datetime, policy: GatePolicy, *, streak: int, probe: bool
) -> bool:
    """``streak`` unknown shapes in a row reach the threshold (0: never), and the breaker is
    closed or this answer is its probe (a block's open breaker is the block's to close)."""
    threshold = policy.site_changed_after
    if threshold <= 0 or streak < threshold:
        return False
    return probe or state.phase(now) is BreakerPhase.CLOSED


def site_changed_wait(state: GateState, now: datetime) -> float | None:
    """Seconds until the gate opens again while the site counts as changed, else None."""
    if state.site_changed_at is None:
        return None
    if state.breaker_until is None:
        return 0.0
    return max((state.breaker_until - now).total_seconds(), 0.0)


def place_deferred(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    opens: datetime,
    *,
    latest: datetime | None = None,
) -> tuple[datetime | None, GateState]:
    """The due time of a lookup deferred until ``opens``: the next free place on the cursor.

    None, and nothing taken, when that place is later than ``latest`` (the lookup's
    deferral bound, ``CENSUS_MAX_DEFER_SECONDS``).
    """
    due = max(opens, now)
    if state.defer_cursor is not None and state.defer_cursor > due:
        due = state.defer_cursor
    if latest is not None and due > latest:
        return None, state
    return due, replace(state, defer_cursor=due + policy.spacing)
