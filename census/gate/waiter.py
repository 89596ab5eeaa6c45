"""The waiter in front of the census site: takes a turn at the shared gate and sleeps to it.

Three pieces, each in its own place:

- the pure policy, ``census.gate.rules`` (what a state and a time allow);
- the store, ``census.gate.store`` (the row, the database's clock, the transaction);
- this waiter, ``GateWaiter``: reserve a slot, sleep to it on this host's monotonic clock, ask
  the store whether the request may go now (``permit``: the breaker, the previous request's
  confirmed send, lateness), and confirm the send (``sent``). It also logs the breaker's
  changes, and keeps a block it could not record from letting this process send again.

No host's wall clock decides when a request may leave: the store answers in times on the
database's clock and relative seconds, and this module sleeps those seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.utils import timezone

from census import events
from census.conf import settings
from census.events import Event
from census.gate import rules
from census.gate.protocol import Admission, Closed, Slot
from census.gate.rules import GatePolicy, GateState, Hold, Retake
from census.gate.store import GateStore

#: Seconds between looks at the row while a probe is out.
_PROBE_POLL = 0.5
#: Seconds a block's record is retried before this process gives up on writing it.
RECORD_SECONDS = 15.0
#: Seconds a send confirmation is retried (the send lease covers a confirmation lost).
CONFIRM_SECONDS = 5.0
DEFAULT_NAME = "census"

#: Monotonic time until which this process holds its sends: a block it saw could not be
#: written to the shared row, so the breaker did not open for it.
_local_hold = {"until": 0.0}
_local_lock = threading.Lock()


def policy_from_settings(interval: float | None = None) -> GatePolicy:
    """The gate's numbers from the ``CENSUS_*`` settings, read now."""
    return GatePolicy(
        interval=settings.rate_limit_seconds if interval is None else interval,
        backoff=settings.block_backoff_seconds,
        backoff_max=settings.block_backoff_max_seconds,
        max_retry_after=settings.max_retry_after_seconds,
        probe_lease=float(settings.task_timeout),
        site_changed_after=settings.site_changed_after,
        site_probe_every=settings.site_probe_seconds,
    )


class GateWaiter:
    """One named gate (a ``RateGate`` row); safe to use from any thread or process.

    ``ticketed``: the caller is a deferred lookup coming back at its place on the cursor.
    ``on_sent``: run (on the database helper) once a request was confirmed sent.
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        interval: float | None = None,
        policy: GatePolicy | None = None,
        ticketed: bool = False,
        using: str = "default",
        store: GateStore | None = None,
        on_sent: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self.ticketed = ticketed
        self.store = store or GateStore(name, using)
        self._interval = interval
        self._policy = policy
        self._on_sent = on_sent

    @property
    def policy(self) -> GatePolicy:
        """Frozen at construction when given, else read from the settings on each use."""
        return self._policy or policy_from_settings(self._interval)

    @property
    def interval(self) -> float:
        return self.policy.interval

    # -- the scraper's side (Gate protocol) --------------------------------------------------

    def peek(self, within: float) -> Closed | None:
        """Would a turn be refused ``within`` seconds? (A probe in flight may answer soon.)"""
        paused = _held_here()
        if paused is not None:
            return paused
        policy = self.policy
        state, now = self.store.read()
        return rules.peek(state, now, policy, deadline=_after(now, within), ticketed=self.ticketed)

    def reserve(self, within: float | None = None) -> Admission:
        """Take the next slot (perhaps as the breaker's probe), or say why not."""
        paused = _held_here()
        if paused is not None:
            return paused
        policy = self.policy

        def change(state: GateState, now: datetime) -> tuple[Admission, GateState]:
            return rules.admit(
                state, now, policy, deadline=_after(now, within), ticketed=self.ticketed
            )

        admission = self.store.apply(change, operation="gate_reserve")
        if isinstance(admission, Slot) and admission.probe:
            events.emit(Event.BREAKER_PROBE, gate=self.name, at=admission.at.isoformat())
        return admission

    def wait_turn(
        self, within: float | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> Admission:
        """Wait until this request may leave: a ``Slot`` holding the send lease, or ``Closed``.

        ``within``: seconds from now by which the request must have left. ``sleep`` lets the
        Playwright thread keep its event loop turning while it waits.
        """
        deadline = None if within is None else time.monotonic() + within
        while True:
            admission = self.reserve(_left(deadline))
            if isinstance(admission, Closed):
                if admission.reason != "probe_in_flight":
                    return admission
                left = _left(deadline)
                if left is not None and left <= 0:
                    return admission
                sleep(_PROBE_POLL if left is None else min(_PROBE_POLL, left))
                continue
            sleep(admission.wait)
            permitted = self._permit(admission, deadline, sleep)
            if permitted is not None:
                return permitted

    def sent(self, slot: Slot, *, left: bool = True) -> None:
        """The request let go in ``slot`` left (or, ``left=False``, never will): stamp it on
        the gate's clock and release its lease; ``on_sent`` when it left. Never raises."""
        if slot.lease_until is None and self._on_sent is None:
            return
        policy = self.policy

        def change(state: GateState, now: datetime) -> tuple[None, GateState]:
            return None, rules.confirm(state, now, policy, slot)

        try:
            if slot.lease_until is not None:
                self.store.apply(change, operation="gate_confirm", seconds=CONFIRM_SECONDS)
        except Exception:  # the lease runs out on its own; the next request waits for it
            events.emit(Event.GATE_CONFIRM_FAILED, gate=self.name)
        if self._on_sent is not None and left:
            try:
                self.store.call(self._on_sent, operation="attempt_sent")
            except Exception:
                events.emit(Event.GATE_CONFIRM_FAILED, gate=self.name, what="attempt_sent")

    def record(
        self,
        slot: Slot,
        *,
        blocked: bool,
        answered: bool,
        retry_after: float | None = None,
        unexpected: str = "",
    ) -> float | None:
        """Apply the request's fate to the breaker; never raises. Returns the seconds until
        the gate opens again when, after it, the site counts as changed (else None).

        A block is retried for ``RECORD_SECONDS``; if it still cannot be written, this
        process holds its sends for the block's backoff (the other workers cannot know).
        """
        policy = self.policy
        changed: list[rules.BreakerChange] = []
        before: list[GateState] = []

        def change(
            state: GateState, now: datetime
        ) -> tuple[tuple[GateState, float, float | None], GateState]:
            after, what = rules.record(
                state,
                now,
                policy,
                blocked=blocked,
                answered=answered,
                probe=slot.probe,
                retry_after=retry_after,
                unexpected=unexpected,
            )
            changed.append(what)
            before.append(state)
            closed_s = (after.breaker_until - now).total_seconds() if after.breaker_until else 0.0
            return (after, closed_s, rules.site_changed_wait(after, now)), after

        seconds = RECORD_SECONDS if blocked else CONFIRM_SECONDS
        try:
            after, closed_s, opens_in = self.store.apply(
                change, operation="gate_record", seconds=seconds
            )
        except Exception:
            events.emit(Event.GATE_RECORD_FAILED, gate=self.name, blocked=blocked)
            if blocked:
                _hold_here(policy.backoff_for(1, retry_after))
            return None
        what = changed[-1] if changed else None
        self._announce(what, after, closed_s, before[-1] if before else None)
        return opens_in

    def _announce(
        self,
        what: rules.BreakerChange,
        after: GateState,
        closed_s: float,
        before: GateState | None,
    ) -> None:
        """Log what the record did to the breaker."""
        if what == "site_changed" and after.breaker_until is not None:
            events.emit(
                Event.SITE_CHANGED,
                gate=self.name,
                signature=after.site_signature,
                count=after.unexpected_streak,
                probe_in_s=round(closed_s, 3),
                until=after.breaker_until.isoformat(),
            )
        elif what == "site_recovered":
            since = before.site_changed_at if before is not None else None
            events.emit(
                Event.SITE_RECOVERED,
                gate=self.name,
                signature=before.site_signature if before is not None else "",
                changed_since=since.isoformat() if since else None,
            )
        elif what == "opened" and after.breaker_until is not None:
            events.emit(
                Event.BREAKER_OPENED,
                gate=self.name,
                backoff_s=round(closed_s, 3),
                consecutive_blocks=after.consecutive_blocks,
                until=after.breaker_until.isoformat(),
            )
        elif what == "closed":
            events.emit(Event.BREAKER_CLOSED, gate=self.name)

    # -- the pipeline's side ------------------------------------------------------------------

    def place_deferred(self, wait: float, *, at_most: float | None = None) -> float | None:
        """Seconds until a lookup deferred for ``wait`` s comes back: its place on the cursor.

        None (nothing taken) when that place is more than ``at_most`` s away. Runs in the
        caller's transaction (the conclusion holding the lookup's row), so the place is
        taken if and only if the deferral commits. Lock order: lookup, then rules.
        """
        policy = self.policy

        def change(state: GateState, now: datetime) -> tuple[float | None, GateState]:
            latest = None if at_most is None else now + timedelta(seconds=at_most)
            opens = now + timedelta(seconds=max(wait, 0.0))
            due, after = rules.place_deferred(state, now, policy, opens, latest=latest)
            return (None if due is None else (due - now).total_seconds()), after

        return self.store.apply_inline(change)

    def state(self) -> GateState:
        """The row as it is now (a fresh gate's state when there is no row yet)."""
        return self.store.read()[0]

    def next_allowed_at(self) -> datetime | None:
        """The row's next slot, on the database's clock."""
        return self.state().next_allowed_at

    # -- inside wait_turn ---------------------------------------------------------------------

    def _permit(
        self, slot: Slot, deadline: float | None, sleep: Callable[[float], None]
    ) -> Admission | None:
        """Ask, until allowed, whether ``slot``'s request may leave; None: take a new turn."""
        policy = self.policy

        def change(state: GateState, now: datetime) -> tuple[rules.Permission, GateState]:
            return rules.permit(state, now, policy, slot, deadline=_after(now, _left(deadline)))

        while True:
            permission = self.store.apply(change, operation="gate_permit")
            if isinstance(permission, Hold):
                sleep(permission.wait)
                continue
            if isinstance(permission, Retake):
                events.emit(Event.GATE_LATE, gate=self.name, late_s=round(permission.late_by, 3))
                return None
            return permission


def _after(now: datetime, seconds: float | None) -> datetime | None:
    return None if seconds is None else now + timedelta(seconds=max(seconds, 0.0))


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _hold_here(seconds: float) -> None:
    with _local_lock:
        _local_hold["until"] = max(_local_hold["until"], time.monotonic() + seconds)


def _held_here() -> Closed | None:
    """A ``Closed`` while this process holds its sends for a block it could not record."""
    left = _local_hold["until"] - time.monotonic()
    if left <= 0:
        return None
    return Closed(timezone.now() + timedelta(seconds=left), "breaker_open", wait=left)


__all__ = ["DEFAULT_NAME", "GateWaiter", "policy_from_settings"]
