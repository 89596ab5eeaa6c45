"""What a scraper sees of the gate in front of the census site: the ``Gate`` protocol, the
``Slot`` it is given to send in or the ``Closed`` it is told, and ``OpenGate``, a gate that
always admits (benchmarks, tests that need no database).

Times are relative seconds: the gate keeps its own clock (the database's), and no host's
wall clock decides when a request may leave. The rules behind it are ``census.gate.rules``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

#: Why a gate refused: its breaker is open, a probe is out, its slots are taken past the
#: caller's deadline, or deferred lookups are ahead of a fresh caller.
ClosedReason = Literal[
    "breaker_open", "probe_in_flight", "rate_backlog", "deferred_ahead", "paused", "site_changed"
]


@dataclass(frozen=True)
class Slot:
    """Admitted: send at ``at``; ``probe`` when this request tests a breaker that paused.

    ``wait``: seconds from the gate's clock reading to ``at`` (what a waiter sleeps, on its
    own monotonic clock). ``lease_until``: set once ``permit`` let the request go; the key
    its ``confirm`` presents.
    """

    at: datetime
    probe: bool = False
    wait: float = field(default=0.0, compare=False)
    lease_until: datetime | None = None


@dataclass(frozen=True)
class Closed:
    """Not admitted before the deadline: the gate opens at ``until`` (at the earliest).

    ``wait``: seconds from the gate's clock reading to ``until``.
    """

    until: datetime
    reason: ClosedReason
    wait: float = field(default=0.0, compare=False)


Admission = Slot | Closed


class Gate(Protocol):
    """What the scraper needs from the gate in front of the census site.

    Times are relative seconds: the gate keeps its own clock (the database's), and no host's
    wall clock decides when a request may leave.
    """

    def peek(self, within: float) -> Closed | None:
        """Before starting a browser: a ``Closed`` when no request could go ``within`` s."""
        ...

    def wait_turn(
        self, within: float | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> Admission:
        """Wait for the moment this request may leave (a ``Slot`` holding the send lease), or
        say it is closed. Call ``sent`` right after letting the request go."""
        ...

    def sent(self, slot: Slot, *, left: bool = True) -> None:
        """The request let go in ``slot`` has left (``left``), or never will: the next one is
        spaced from now, and the send lease is released."""
        ...

    def record(
        self,
        slot: Slot,
        *,
        blocked: bool,
        answered: bool,
        retry_after: float | None = None,
        unexpected: str = "",
    ) -> float | None:
        """Tell the gate what became of the request sent in ``slot``; ``unexpected``: the
        signature of an answer in no known shape.

        Returns the seconds until the gate opens again when, after this answer, the site
        counts as changed (the site-changed breaker is open): such an answer is not the
        member's to pay for. None otherwise.
        """
        ...


class OpenGate:
    """A gate that always admits at once (benchmarks, tests that need no database)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        from datetime import UTC

        self._clock = clock or (lambda: datetime.now(UTC))
        self.recorded: list[tuple[bool, bool, float | None]] = []
        self.sends = 0

    def peek(self, within: float) -> Closed | None:
        return None

    def wait_turn(
        self, within: float | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> Admission:
        return Slot(self._clock())

    def sent(self, slot: Slot, *, left: bool = True) -> None:
        self.sends += left

    def record(
        self,
        slot: Slot,
        *,
        blocked: bool,
        answered: bool,
        retry_after: float | None = None,
        unexpected: str = "",
    ) -> float | None:
        self.recorded.append((blocked, answered, retry_after))
        return None
