"""The gate's store: one ``RateGate`` row, its clock, and its transaction.

``apply(change)`` runs ``change(state, now)`` on the row's state under the row lock
(``select_for_update``; on SQLite the write lock taken at BEGIN with ``transaction_mode
IMMEDIATE``) and saves the state it returns, in one short transaction. ``now`` is the
database's clock, read once the lock is held: slots, pauses, leases and the cursor are all
on that one clock, whichever host asks.

The work runs on this process's database helper (``census.database``): one thread with one
long-lived connection, reconnecting when the database drops it, giving up on a stalled one.
A reservation therefore commits at once, visible to every worker. Asking for one inside a
transaction of the caller is refused (``GateInTransaction``): on SQLite the caller's write
lock would hold the helper back until it commits.

``apply_inline`` runs in the caller's transaction instead: the conclusion that defers a
lookup takes its place on the cursor if and only if the deferral commits (lock order:
lookup, then gate). Tests that run inside a transaction use ``inline=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import TypeVar

from django.db import connections, transaction
from django.utils import timezone

from census import database
from census.exceptions import CensusError
from census.gate.rules import GateState
from census.models import RateGate as RateGateRow

T = TypeVar("T")

Change = Callable[[GateState, datetime], tuple[T, GateState]]


class GateInTransaction(CensusError, RuntimeError):
    """The gate was asked to reserve inside a transaction of the caller."""


class GateStore:
    """The row named ``name`` in database ``using``."""

    #: Tests inside a transaction (pytest-django's default) set this: the gate then works
    #: in the caller's transaction, as ``apply_inline``.
    inline_default = False

    def __init__(self, name: str, using: str = "default", *, inline: bool | None = None) -> None:
        self.name = name
        self.using = using
        self.inline = self.inline_default if inline is None else inline

    def apply(
        self, change: Change[T], *, operation: str, seconds: float = database.RETRY_SECONDS
    ) -> T:
        """Run ``change`` on the locked row and commit, retrying a dropped connection."""
        if self.inline:
            return self.apply_inline(change)
        if connections[self.using].in_atomic_block:
            raise GateInTransaction(
                "the rate gate commits its reservations at once: call it outside "
                "transaction.atomic() (another worker would not see it until you commit)"
            )
        work = lambda: self._transaction(change)  # noqa: E731
        return database.helper(self.using).retrying(work, operation=operation, seconds=seconds)

    def call(self, work: Callable[[], T], *, operation: str, seconds: float = 5.0) -> T:
        """Run other database work where the gate's runs (the helper, or inline)."""
        if self.inline:
            return work()
        return database.helper(self.using).retrying(work, operation=operation, seconds=seconds)

    def apply_inline(self, change: Change[T]) -> T:
        """Run ``change`` on the locked row in the caller's transaction (no commit here)."""
        with transaction.atomic(using=self.using):
            connection = connections[self.using]
            before = _lock_timeout(connection, database.LOCK_TIMEOUT)
            try:
                return self._locked(change)
            finally:
                if before is not None:  # the caller's transaction keeps its own setting
                    _lock_timeout(connection, before)

    def read(self) -> tuple[GateState, datetime]:
        """The row's state (a fresh gate's when there is none) and the database's time."""

        def look() -> tuple[GateState, datetime]:
            now = database.clock(self.using)
            row = RateGateRow.objects.using(self.using).filter(name=self.name).first()
            return (_state(row) if row else GateState(next_allowed_at=now)), now

        if self.inline:
            return look()
        return database.helper(self.using).retrying(look, operation="gate_read")

    def _transaction(self, change: Change[T]) -> T:
        with transaction.atomic(using=self.using):
            return self._locked(change)

    def _locked(self, change: Change[T]) -> T:
        # get_or_create inside the transaction: a first use by two workers at once ends with
        # one row, and the loser waits on the winner's lock (PostgreSQL) or on SQLite's write
        # lock, taken at BEGIN with transaction_mode IMMEDIATE.
        row, _ = (
            RateGateRow.objects.using(self.using)
            .select_for_update()
            .get_or_create(name=self.name, defaults={"next_allowed_at": timezone.now()})
        )
        # Read the clock once the lock is held: waiting for it takes time.
        now = database.clock(self.using)
        before = _state(row)
        result, after = change(before, now)
        if after != before:
            for field, value in asdict(after).items():
                setattr(row, field, value)
            row.save(using=self.using)
        return result


def _state(row: RateGateRow) -> GateState:
    return GateState(
        next_allowed_at=row.next_allowed_at,
        breaker_until=row.breaker_until,
        consecutive_blocks=row.consecutive_blocks,
        probe_until=row.probe_until,
        defer_cursor=row.defer_cursor,
        last_sent_at=row.last_sent_at,
        sending_until=row.sending_until,
        paused_at=row.paused_at,
        unexpected_streak=row.unexpected_streak,
        site_changed_at=row.site_changed_at,
        site_signature=row.site_signature,
    )


def _lock_timeout(connection: object, seconds: float | str) -> str | None:
    """Set this transaction's ``lock_timeout`` on PostgreSQL; returns the previous value."""
    if getattr(connection, "vendor", "") != "postgresql":
        return None
    value = seconds if isinstance(seconds, str) else f"{int(seconds * 1000)}ms"
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            [value],
        )
        (previous, _) = cursor.fetchone()
    return str(previous)
