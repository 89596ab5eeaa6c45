"""How the site's capacity is shared between kinds of work: pure policy, no Django, no I/O.

Every lookup belongs to one ``WorkClass``, set when its budget starts (a registration, a
leader's refresh, a bulk run or re-check) and kept until the next budget. Before an attempt
opens a browser or takes a captcha token it asks ``share_wait`` whether its class may use the
site now (``census.lookup.capacity`` reads the counts and applies the answer):

- **registration** (a new member) always may: the gate serves it first;
- **refresh** and **bulk** may while no registration waits; while one does, each may use at
  most its share (``CENSUS_CAPACITY_SHARES``) of the requests the gate lets out in a window
  of ``window_slots`` intervals, and waits, uncharged and off the gate's line, for its share
  to come round;
- **unverified** (a registration the portal has not verified yet, ``CENSUS_IS_VERIFIED``)
  runs only in spare capacity: while no lookup of any other class waits.

So while registrations wait they get at least ``1 - share(refresh) - share(bulk)`` of the
site; when they do not, nothing is held back (no capacity is left idle for a class that has
no work).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

#: Default shares of the site's requests, while registrations wait.
DEFAULT_SHARES: Mapping[str, float] = {"refresh": 0.2, "bulk": 0.2}
#: A window of this many gate intervals measures what a class used (20 × 5 s = 100 s).
WINDOW_SLOTS = 20
#: A lookup due within this many seconds (or already queued or running) waits.
HORIZON_SECONDS = 30.0
#: The longest an unverified lookup waits before it looks again for spare capacity.
SPARE_RECHECK_MAX = 900.0


class WorkClass(StrEnum):
    """Why a lookup's budget runs; highest priority first."""

    #: A new member's first lookup.
    REGISTRATION = "registration"
    #: A leader's (or the admin's single-row) refresh: ``request_refresh``.
    REFRESH = "refresh"
    #: A bulk run: ``census_lookup``, the admin's multi-row refresh, the periodic re-check.
    BULK = "bulk"
    #: A registration the portal has not verified yet: only spare capacity.
    UNVERIFIED = "unverified"


#: The classes that take a share while registrations wait.
SHARED = (WorkClass.REFRESH, WorkClass.BULK)


@dataclass(frozen=True, kw_only=True)
class SharePolicy:
    """The sharing's numbers, read from the settings by the caller."""

    #: Seconds between two requests at the gate (``CENSUS_RATE_LIMIT_SECONDS``).
    interval: float
    #: Share of the requests each of ``SHARED`` may use while registrations wait.
    shares: Mapping[str, float]
    window_slots: int = WINDOW_SLOTS

    @property
    def window(self) -> float:
        """Seconds over which a class's use is counted."""
        return self.interval * self.window_slots

    def share(self, work_class: WorkClass) -> float:
        return min(max(float(self.shares.get(work_class.value, 0.0)), 0.0), 1.0)

    def budget(self, work_class: WorkClass) -> int:
        """Requests ``work_class`` may start per window while registrations wait."""
        share = self.share(work_class)
        if share <= 0:
            return 0
        return max(1, math.floor(share * self.window_slots + 1e-9))


@dataclass(frozen=True)
class Wait:
    """Not now: look again in ``seconds``; ``why`` is the deferral's text."""

    seconds: float
    why: str


@dataclass(frozen=True, kw_only=True)
class Demand:
    """What waits, per class (queued, running or due within ``HORIZON_SECONDS``; the asking
    lookup left out), and what the asking class used in the current window."""

    waiting: Mapping[WorkClass, int]
    #: Requests the asking class started in the last ``policy.window`` seconds (running
    #: ones included), and the age in seconds of the oldest of them.
    used: int = 0
    oldest_age: float | None = None


def share_wait(work_class: WorkClass, demand: Demand, policy: SharePolicy) -> Wait | None:
    """May a lookup of ``work_class`` use the site now? None: yes; else how long to wait."""
    if work_class is WorkClass.REGISTRATION or policy.interval <= 0:
        return None
    waiting = demand.waiting
    if work_class is WorkClass.UNVERIFIED:
        ahead = sum(n for cls, n in waiting.items() if cls is not WorkClass.UNVERIFIED)
        if ahead == 0:
            return None
        own = waiting.get(WorkClass.UNVERIFIED, 0)
        seconds = min(max(policy.interval * (ahead + own), policy.interval), SPARE_RECHECK_MAX)
        return Wait(seconds, f"unverified: {ahead} verified lookup(s) waiting")
    registrations = waiting.get(WorkClass.REGISTRATION, 0)
    if registrations == 0:
        return None
    budget = policy.budget(work_class)
    if demand.used < budget:
        return None
    if budget == 0 or demand.oldest_age is None:
        seconds = policy.window
    else:  # the oldest counted request leaves the window then
        seconds = max(policy.window - demand.oldest_age, policy.interval)
    return Wait(
        seconds,
        f"{work_class.value}: share used ({demand.used} of {budget} per {policy.window:.0f} s)"
        f" while {registrations} registration(s) wait",
    )
