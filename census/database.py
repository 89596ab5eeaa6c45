"""Database operations that survive a dropped or stalled connection, and the database's clock.

A restart, a failover or a proxy timeout closes connections under running attempts; a
frozen server or a black-holed network leaves a query waiting forever. Two tools:

- ``retrying(work)``: run an operation that opens its own transaction; when the connection
  drops, close it, wait a little, and run the operation again, for at most ``RETRY_SECONDS``.
  Only outside a transaction: inside one the operation's earlier writes are gone with the
  connection, so the caller's transaction must fail as a whole.
- ``Helper``: one thread per process with its own long-lived connection (no thread and no
  connection per call), for the gate's work: the Playwright thread runs an asyncio loop (the
  ORM refuses to run there), and a reservation must commit at once whatever the caller's
  transaction. A call that gets no answer within its timeout abandons the thread (stuck in
  a socket read of a frozen server) and the next call starts a fresh one. On PostgreSQL
  the helper's session has connect, statement, lock and idle-in-transaction timeouts.

``clock(using)``: the database's own time (PostgreSQL's ``clock_timestamp()``). Hosts that
share the database disagree about the time by seconds; times that several hosts compare
are read from here. On SQLite, one host, the host's clock is the database's.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone

from census import events
from census.events import Event
from census.exceptions import CensusError

T = TypeVar("T")

#: Seconds an operation keeps retrying a dropped connection before it fails for good.
RETRY_SECONDS = 15.0
#: Seconds one call may wait for the helper before it counts the database as stalled.
CALL_TIMEOUT = 12.0
#: The helper's session limits on PostgreSQL (seconds).
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT = 10.0
LOCK_TIMEOUT = 10.0
IDLE_IN_TRANSACTION_TIMEOUT = 30.0


class DatabaseStalled(CensusError, OperationalError):
    """The database did not answer a call within its timeout."""


def is_transient(error: BaseException) -> bool:
    """A dropped connection, a stalled server, a lock or statement timeout: worth a retry."""
    return isinstance(error, OperationalError | InterfaceError)


def retrying(
    work: Callable[[], T],
    *,
    operation: str,
    using: str = "default",
    seconds: float = RETRY_SECONDS,
    reset: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``work``; on a transient database error reset the connection and run it again.

    ``reset`` closes the broken connection (by default the calling thread's ``using``).
    Raises the last error once ``seconds`` are spent, or at once inside a transaction.
    """
    deadline = time.monotonic() + seconds
    wait = 0.1
    while True:
        try:
            return work()
        except DatabaseError as error:
            if not is_transient(error) or connections[using].in_atomic_block:
                raise
            if time.monotonic() + wait > deadline:
                raise
            error_name = type(error).__name__
            events.emit(Event.DATABASE_RETRY, operation=operation, error=error_name, wait_s=wait)
            (reset or connections[using].close)()
            sleep(wait)
            wait = min(wait * 2, 2.0)


def clock(using: str = "default") -> datetime:
    """The database's current time (its clock, not this host's)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (now,) = cursor.fetchone()
    assert isinstance(now, datetime)
    return now


class Helper:
    """A thread of this process with a long-lived connection of its own, running one call at
    a time. Safe to call from any thread; restarted after a fork and after a stall."""

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] | None = None
        self._pid = 0

    def call(self, work: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``work`` on the helper's connection; ``DatabaseStalled`` after ``timeout``."""
        future: Future[T] = Future()
        jobs = self._ensure()
        jobs.put((work, future))
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            with self._lock:
                if self._jobs is jobs:  # leave the stuck thread behind: the next call starts anew
                    self._jobs = None
            raise DatabaseStalled(f"the database did not answer within {timeout:g} s") from None

    def retrying(
        self, work: Callable[[], T], *, operation: str, seconds: float = RETRY_SECONDS
    ) -> T:
        """``call`` with ``retrying``'s reconnects (the helper closes its own connection)."""

        def attempt() -> T:
            return self.call(work, timeout=min(CALL_TIMEOUT, max(seconds, 0.5)))

        return retrying(
            attempt, operation=operation, using=self.using, seconds=seconds, reset=_no_reset
        )

    def close(self) -> None:
        """Close the helper's connection and end its thread (the next call starts anew)."""
        with self._lock:
            jobs, self._jobs = self._jobs, None
        if jobs is None or self._pid != os.getpid():
            return
        future: Future[None] = Future()
        # Closed in the job itself, so the connection is gone when this returns; the thread
        # then sees it was abandoned and ends.
        jobs.put((lambda: _close_quietly(self.using), future))
        try:
            future.result(timeout=CALL_TIMEOUT)
        except Exception:  # a stuck thread closes its connection when it wakes
            return

    def _ensure(self) -> queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]:
        with self._lock:
            if self._jobs is None or self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                self._pid = os.getpid()
                thread = threading.Thread(
                    target=self._serve, args=(self._jobs,), name="census-db-helper", daemon=True
                )
                thread.start()
            return self._jobs

    def _serve(self, jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        configured: object = None
        while True:
            work, future = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                connection = connections[self.using]
                if connection.connection is None or connection.connection is not configured:
                    configured = _configure(connection)
                future.set_result(work())
            except BaseException as error:  # handed to the caller, who re-raises it
                if isinstance(error, DatabaseError) and is_transient(error):
                    _close_quietly(self.using)
                    configured = None
                future.set_exception(error)
            with self._lock:
                if self._jobs is not jobs:  # abandoned after a stall: leave to the new thread
                    _close_quietly(self.using)
                    return


def _no_reset() -> None:
    """The helper thread resets its own connection."""


def _close_quietly(using: str) -> None:
    try:
        connections[using].close()
    except Exception:  # a connection already broken may fail to close: it is gone anyway
        connections[using].connection = None


def _configure(connection: Any) -> object:
    """Open the helper's connection with its timeouts (PostgreSQL); returns the DB-API one."""
    if connection.vendor == "postgresql" and connection.connection is None:
        options = dict(connection.settings_dict.get("OPTIONS") or {})
        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
        # Only this thread's wrapper gets the new dict: other threads keep the settings.
        connection.settings_dict = {**connection.settings_dict, "OPTIONS": options}
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false),"
                " set_config('lock_timeout', %s, false),"
                " set_config('idle_in_transaction_session_timeout', %s, false)",
                [
                    f"{int(STATEMENT_TIMEOUT * 1000)}ms",
                    f"{int(LOCK_TIMEOUT * 1000)}ms",
                    f"{int(IDLE_IN_TRANSACTION_TIMEOUT * 1000)}ms",
                ],
            )
    return connection.connection


_helpers: dict[str, Helper] = {}
_helpers_lock = threading.Lock()


def helper(using: str = "default") -> Helper:
    """This process's helper for database ``using``."""
    with _helpers_lock:
        if using not in _helpers:
            _helpers[using] = Helper(using)
        return _helpers[using]


def close_helpers() -> None:
    """Close every helper's connection (before dropping a database, e.g. in tests)."""
    with _helpers_lock:
        helpers = list(_helpers.values())
    for each in helpers:
        each.close()
