"""The cluster-wide rate gate: at most one census request per ``CENSUS_RATE_LIMIT_SECONDS``.

Every worker of every cluster sharing the database reserves the next free slot in one
``RateGate`` row (row lock, one short transaction) and then sleeps until that slot. A 429 or
a block pushes the row's time out so that every worker backs off.

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import structlog
from django.db import OperationalError, connections, transaction
from django.utils import timezone

from census.conf import settings
from census.models import RateGate as RateGateRow

#: Seconds added between slots: the time from the gate to the request reaching the site
#: varies by some milliseconds per browser, and the site must never see two requests closer
#: than the limit.
SEND_MARGIN = 0.1
#: Attempts at the reservation when SQLite reports "database is locked".
_LOCKED_RETRIES = 5

T = TypeVar("T")
log = structlog.get_logger(__name__)


class Gate(Protocol):
    """What the scraper needs from a rate gate."""

    def wait_turn(
        self, deadline: datetime | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> float | None: ...

    def push_back(self, seconds: float) -> object: ...

    def next_allowed_at(self) -> datetime | None: ...


class OpenGate:
    """A gate that never waits (benchmarks, tests that need no database)."""

    def wait_turn(
        self, deadline: datetime | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> float | None:
        return 0.0

    def push_back(self, seconds: float) -> None:
        return None

    def next_allowed_at(self) -> datetime | None:
        return None


@dataclass(frozen=True)
class Reservation:
    """A reserved slot; ``next_allowed_at`` is what the row holds afterwards."""

    slot: datetime
    next_allowed_at: datetime


def next_slot(next_allowed_at: datetime, now: datetime, interval: float) -> Reservation:
    """The slot a caller gets at ``now`` given the row's value; pure slot arithmetic."""
    slot = max(now, next_allowed_at)
    spacing = interval + SEND_MARGIN if interval > 0 else 0.0
    return Reservation(slot=slot, next_allowed_at=slot + timedelta(seconds=spacing))


def pushed_back(next_allowed_at: datetime, now: datetime, seconds: float) -> datetime:
    """The row's value after a back-off of ``seconds`` from ``now``; it never moves earlier."""
    return max(next_allowed_at, now + timedelta(seconds=max(seconds, 0.0)))


class RateGate:
    """One named gate in the ``RateGate`` table; safe to use from any thread or process."""

    def __init__(
        self, name: str = "census", *, interval: float | None = None, using: str = "default"
    ) -> None:
        self.name = name
        self.using = using
        self._interval = interval

    @property
    def interval(self) -> float:
        """Seconds between requests; read per call so ``override_settings`` applies."""
        return settings.rate_limit_seconds if self._interval is None else self._interval

    def reserve(self, deadline: datetime | None = None) -> Reservation | None:
        """Take the next slot, or None (taking nothing) when it would be after ``deadline``."""
        return _off_thread(lambda: self._reserve(deadline), self.using)

    def wait_turn(
        self,
        deadline: datetime | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float | None:
        """Reserve a slot and sleep until it; seconds waited, or None if past ``deadline``.

        ``sleep`` lets the Playwright thread keep its event loop turning while it waits.
        """
        reservation = self.reserve(deadline)
        if reservation is None:
            return None
        delay = max((reservation.slot - timezone.now()).total_seconds(), 0.0)
        if delay > 0:
            sleep(delay)
        return delay

    def push_back(self, seconds: float) -> datetime:
        """Allow no request before ``seconds`` from now (e.g. ``Retry-After``)."""
        until = _off_thread(lambda: self._push_back(seconds), self.using)
        log.info("rate_gate_pushed_back", gate=self.name, seconds=round(seconds, 3))
        return until

    def next_allowed_at(self) -> datetime | None:
        """The row's current value (None before the first use)."""

        def read() -> datetime | None:
            row = RateGateRow.objects.using(self.using).filter(name=self.name).first()
            return row.next_allowed_at if row else None

        return _off_thread(read, self.using)

    def _reserve(self, deadline: datetime | None) -> Reservation | None:
        def attempt() -> Reservation | None:
            with transaction.atomic(using=self.using):
                row = self._locked_row()
                # Read the clock only once the lock is held: waiting for it takes time.
                reservation = next_slot(row.next_allowed_at, timezone.now(), self.interval)
                if deadline is not None and reservation.slot > deadline:
                    return None
                row.next_allowed_at = reservation.next_allowed_at
                row.save(update_fields=["next_allowed_at"], using=self.using)
                return reservation

        return _retry_locked(attempt)

    def _push_back(self, seconds: float) -> datetime:
        def attempt() -> datetime:
            with transaction.atomic(using=self.using):
                row = self._locked_row()
                row.next_allowed_at = pushed_back(row.next_allowed_at, timezone.now(), seconds)
                row.save(update_fields=["next_allowed_at"], using=self.using)
                return row.next_allowed_at

        return _retry_locked(attempt)

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


def _retry_locked(attempt: Callable[[], T]) -> T:
    """Run ``attempt``; retry when SQLite in its default (deferred) mode reports a lock."""
    for tries in range(_LOCKED_RETRIES):
        try:
            return attempt()
        except OperationalError as error:
            if "locked" not in str(error) or tries == _LOCKED_RETRIES - 1:
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
