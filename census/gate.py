"""The cluster-wide gate in front of the census site: rate spacing plus a circuit breaker.

Pure policy: a ``GateState`` and a clock value in, a decision and the next state out. The
database-backed gate (``census.ratelimit.RateGate``) applies these under a row lock; the
scraper sees only the ``Gate`` protocol. No Django, no I/O here.

- **Spacing.** Requests get consecutive slots ``interval`` (+ ``SEND_MARGIN``) apart.
- **Breaker.** A block (F5 page, 403, 429) opens it for a pause: the 429's ``Retry-After``
  when given (clamped), else ``backoff`` seconds doubled per consecutive block up to
  ``backoff_max``. While it is open nothing is admitted. When the pause is over exactly one
  request, the probe, is admitted; the others wait for it. An answered probe closes the
  breaker (and resets the pause); a blocked probe reopens it with the next pause.
- **Deferral.** A caller that cannot be admitted before its deadline is told when the gate
  opens (``Closed``). The pipeline then places the lookup on the deferral cursor, one slot per
  deferred lookup, so that they do not all fire at once when the breaker closes; fresh callers
  arriving while the cursor is ahead queue behind it (deferred lookups keep their place).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

#: Seconds added between slots: the time from the gate to the request reaching the site
#: varies by some milliseconds per browser, and the site must never see two requests closer
#: than the limit.
SEND_MARGIN = 0.1

#: Why a gate refused: its breaker is open, a probe is out, its slots are taken past the
#: caller's deadline, or deferred lookups are ahead of a fresh caller.
ClosedReason = Literal["breaker_open", "probe_in_flight", "rate_backlog", "deferred_ahead"]


def clamp_seconds(value: float | None, maximum: float) -> float:
    """``value`` as a finite number of seconds in ``[0, maximum]`` (None, NaN -> 0)."""
    if value is None or math.isnan(value):
        return 0.0
    return min(max(float(value), 0.0), max(float(maximum), 0.0))


@dataclass(frozen=True, kw_only=True)
class GatePolicy:
    """The gate's numbers, frozen when the gate is built (settings are read by the caller)."""

    #: Minimum seconds between two census requests.
    interval: float
    #: Pause after the first block of a spell; doubles per consecutive block.
    backoff: float = 60.0
    backoff_max: float = 1800.0
    #: Longest pause any ``Retry-After`` may impose.
    max_retry_after: float = 3600.0
    #: Seconds a probe may stay out before another caller may probe (its holder died).
    probe_lease: float = 120.0

    @property
    def spacing(self) -> timedelta:
        return timedelta(seconds=self.interval + SEND_MARGIN if self.interval > 0 else 0.0)

    def pause(self, consecutive_blocks: int, retry_after: float | None) -> float:
        """Seconds the breaker stays open after the ``consecutive_blocks``-th block."""
        if retry_after is not None:
            return clamp_seconds(retry_after, self.max_retry_after)
        exponent = min(max(consecutive_blocks - 1, 0), 32)  # 2**32 * 60 s is past any cap
        return clamp_seconds(self.backoff * 2**exponent, max(self.backoff_max, self.backoff))


@dataclass(frozen=True, kw_only=True)
class GateState:
    """What the shared gate row holds."""

    next_allowed_at: datetime
    breaker_until: datetime | None = None
    consecutive_blocks: int = 0
    probe_until: datetime | None = None
    defer_cursor: datetime | None = None

    def breaker_open(self, now: datetime) -> bool:
        return self.breaker_until is not None and now < self.breaker_until


@dataclass(frozen=True)
class Slot:
    """Admitted: send at ``at``; ``probe`` when this request tests a breaker that paused."""

    at: datetime
    probe: bool = False


@dataclass(frozen=True)
class Closed:
    """Not admitted before the deadline: the gate opens at ``until`` (at the earliest)."""

    until: datetime
    reason: ClosedReason


Admission = Slot | Closed


def admit(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    *,
    deadline: datetime | None,
    ticketed: bool = False,
) -> tuple[Admission, GateState]:
    """Reserve the next slot for a request, or say why not; ``ticketed``: a deferred lookup."""
    if state.breaker_until is not None:
        if now < state.breaker_until:
            return Closed(state.breaker_until, "breaker_open"), state
        if state.probe_until is not None and now < state.probe_until:
            return Closed(state.probe_until, "probe_in_flight"), state
        slot = max(now, state.next_allowed_at)
        if deadline is not None and slot > deadline:
            return Closed(slot, "rate_backlog"), state
        probe_until = slot + timedelta(seconds=policy.probe_lease)
        return Slot(slot, probe=True), replace(
            state, next_allowed_at=slot + policy.spacing, probe_until=probe_until
        )
    if not ticketed and state.defer_cursor is not None and state.defer_cursor > now:
        return Closed(state.defer_cursor, "deferred_ahead"), state
    slot = max(now, state.next_allowed_at)
    if deadline is not None and slot > deadline:
        return Closed(slot, "rate_backlog"), state
    return Slot(slot), replace(state, next_allowed_at=slot + policy.spacing)


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


#: What a request's answer did to the breaker.
BreakerChange = Literal["opened", "closed", "probe_released"] | None


def record(
    state: GateState,
    now: datetime,
    policy: GatePolicy,
    *,
    blocked: bool,
    answered: bool,
    probe: bool,
    retry_after: float | None = None,
) -> tuple[GateState, BreakerChange]:
    """Apply one request's fate: ``blocked`` by the site, ``answered`` by it, or neither."""
    if blocked:
        if state.breaker_open(now) and not probe:
            return state, None  # a straggler admitted before the breaker opened
        blocks = state.consecutive_blocks + 1
        until = now + timedelta(seconds=policy.pause(blocks, retry_after))
        if state.breaker_until is not None and state.breaker_until > until:
            until = state.breaker_until
        return replace(
            state, breaker_until=until, consecutive_blocks=blocks, probe_until=None
        ), "opened"
    if answered:
        if state.breaker_until is None:
            return replace(state, consecutive_blocks=0), None
        if probe:
            return replace(
                state, breaker_until=None, consecutive_blocks=0, probe_until=None
            ), "closed"
        return state, None
    if probe and state.probe_until is not None:
        return replace(state, probe_until=None), "probe_released"
    return state, None


def place_deferred(
    state: GateState, now: datetime, policy: GatePolicy, opens: datetime
) -> tuple[datetime, GateState]:
    """The due time of a lookup deferred until ``opens``: the next free place on the cursor."""
    due = max(opens, now)
    if state.defer_cursor is not None and state.defer_cursor > due:
        due = state.defer_cursor
    return due, replace(state, defer_cursor=due + policy.spacing)


class Gate(Protocol):
    """What the scraper needs from the gate in front of the census site."""

    def peek(self, deadline: datetime) -> Closed | None:
        """Before starting a browser: a ``Closed`` when no request could go before deadline."""
        ...

    def wait_turn(
        self, deadline: datetime | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> Admission:
        """Reserve a slot and sleep until it (waiting out a probe), or say it is closed."""
        ...

    def record(
        self, slot: Slot, *, blocked: bool, answered: bool, retry_after: float | None = None
    ) -> None:
        """Tell the gate what became of the request sent in ``slot``."""
        ...


class OpenGate:
    """A gate that always admits at once (benchmarks, tests that need no database)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        from datetime import UTC

        self._clock = clock or (lambda: datetime.now(UTC))
        self.recorded: list[tuple[bool, bool, float | None]] = []

    def peek(self, deadline: datetime) -> Closed | None:
        return None

    def wait_turn(
        self, deadline: datetime | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> Admission:
        return Slot(self._clock())

    def record(
        self, slot: Slot, *, blocked: bool, answered: bool, retry_after: float | None = None
    ) -> None:
        self.recorded.append((blocked, answered, retry_after))
