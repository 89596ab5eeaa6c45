"""Every structlog event the app emits: names here, fields documented in the README table.

The app never configures logging; the project decides where these go.
"""

from __future__ import annotations

from typing import Any

import structlog

#: A lookup's status changed (one per change in the database, emitted after commit).
LOOKUP_STATUS_CHANGED = "lookup_status_changed"
#: A worker began an attempt (the browser work starts).
ATTEMPT_STARTED = "attempt_started"
#: An attempt produced an outcome (or its task failed).
ATTEMPT_FINISHED = "attempt_finished"
#: Work for an attempt that is no longer current (duplicate delivery, replayed hook).
ATTEMPT_IGNORED = "attempt_ignored"
#: An attempt that never reported back was found by the sweeper.
ATTEMPT_LOST = "attempt_lost"
#: The gate was closed: the attempt sent nothing and waits for the gate, spending no budget.
ATTEMPT_DEFERRED = "attempt_deferred"
#: A lookup with no queued or running task was queued again by the sweeper.
LOOKUP_RESUMED = "lookup_resumed"
#: Queuing a lookup's task failed; the sweeper will resume it.
ENQUEUE_FAILED = "enqueue_failed"
#: The sweeper failed on one lookup (logged with its traceback) and went on with the rest.
SWEEP_FAILED = "sweep_failed"
#: The census site blocked a request: nothing goes to it until the pause is over.
BREAKER_OPENED = "breaker_opened"
#: The pause is over: one request tests whether the site still blocks.
BREAKER_PROBE = "breaker_probe"
#: The probe was answered: requests flow again.
BREAKER_CLOSED = "breaker_closed"
#: A leader asked for a new lookup and it was queued.
REFRESH_REQUESTED = "refresh_requested"
#: A leader asked for a new lookup while one was in flight; nothing was queued.
REFRESH_SKIPPED = "refresh_skipped"
#: Someone who is not a leader asked for a new lookup.
REFRESH_DENIED = "refresh_denied"

ALL = (
    LOOKUP_STATUS_CHANGED,
    ATTEMPT_STARTED,
    ATTEMPT_FINISHED,
    ATTEMPT_IGNORED,
    ATTEMPT_LOST,
    ATTEMPT_DEFERRED,
    LOOKUP_RESUMED,
    ENQUEUE_FAILED,
    SWEEP_FAILED,
    BREAKER_OPENED,
    BREAKER_PROBE,
    BREAKER_CLOSED,
    REFRESH_REQUESTED,
    REFRESH_SKIPPED,
    REFRESH_DENIED,
)

logger = structlog.get_logger("census")


def info(event: str, **fields: Any) -> None:
    logger.info(event, **fields)


def warning(event: str, **fields: Any) -> None:
    logger.warning(event, **fields)


def exception(event: str, **fields: Any) -> None:
    """An unexpected failure: logged with its traceback (call from an ``except`` block)."""
    logger.exception(event, **fields)
