"""The one vocabulary of structlog events: every event the app emits is an ``Event`` member.

Each member carries its level; fields are documented in the event table of
docs/observability.md (tests/unit/test_event_docs.py checks it against the enum and against the
fields a lookup's events carry; tests/unit/test_events.py fails on any event-name literal in
census/ that is not a member). The app never configures logging; the project decides where
these go (``census.logs`` masks cédulas in messages and tracebacks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import structlog


class Event(StrEnum):
    """Event names, snake_case noun + past verb."""

    #: A lookup's status changed (one per change in the database, emitted after commit).
    LOOKUP_STATUS_CHANGED = "lookup_status_changed"
    #: A worker began an attempt (the browser work starts).
    ATTEMPT_STARTED = "attempt_started"
    #: An attempt produced an outcome.
    ATTEMPT_FINISHED = "attempt_finished"
    #: The attempt's task raised something unexpected (a bug, not a site failure); with its
    #: traceback, also stored on the attempt row.
    ATTEMPT_CRASHED = "attempt_crashed"
    #: Work for an attempt that is no longer current (duplicate delivery, replayed hook).
    ATTEMPT_IGNORED = "attempt_ignored"
    #: An attempt that never reported back was found by the sweeper.
    ATTEMPT_LOST = "attempt_lost"
    #: The gate was closed: the attempt sent nothing and waits for the gate, spending no budget.
    ATTEMPT_DEFERRED = "attempt_deferred"
    #: A new user got no lookup: ``CENSUS_LOOKUP_FOR`` refused them (emitted after commit).
    LOOKUP_SKIPPED = "lookup_skipped"
    #: The portal verified a member (``census.mark_verified``): their lookup is a
    #: registration now, no longer waiting for spare capacity.
    LOOKUP_VERIFIED = "lookup_verified"
    #: A lookup with no queued or running task was queued again by the sweeper.
    LOOKUP_RESUMED = "lookup_resumed"
    #: Queuing a lookup's task failed; the sweeper will resume it.
    ENQUEUE_FAILED = "enqueue_failed"
    #: The sweeper failed on one lookup (logged with its traceback) and went on with the rest.
    SWEEP_FAILED = "sweep_failed"
    #: A round of the in-worker scheduler tick failed; the next round runs anyway.
    SCHEDULER_TICK_FAILED = "scheduler_tick_failed"
    #: The census site blocked a request: nothing goes to it until the pause is over.
    BREAKER_OPENED = "breaker_opened"
    #: The pause is over: one request tests whether the site still blocks.
    BREAKER_PROBE = "breaker_probe"
    #: The probe was answered: requests flow again.
    BREAKER_CLOSED = "breaker_closed"
    #: Answers in no known shape came in a row: the site has changed; lookups are deferred
    #: (not charged) and one probe goes out per period.
    SITE_CHANGED = "site_changed"
    #: A probe was answered in a known shape: the site-changed breaker closed.
    SITE_RECOVERED = "site_recovered"
    #: An answer in no known shape was seen with a new signature: its page was kept.
    SNAPSHOT_KEPT = "snapshot_kept"
    #: Storing an unexpected page's snapshot failed; the attempt's report is written.
    SNAPSHOT_FAILED = "snapshot_failed"
    #: The gate could not record a request's fate (database trouble); the lookup goes on.
    GATE_RECORD_FAILED = "gate_record_failed"
    #: The gate could not confirm a request's send (database trouble); its lease expires.
    GATE_CONFIRM_FAILED = "gate_confirm_failed"
    #: A request woke too late for its slot and took a new turn instead of going out late.
    GATE_LATE = "gate_late"
    #: A database step lost its connection (dropped, stalled) and is retried.
    DATABASE_RETRY = "database_retry"
    #: A browser stuck past the scrape timeout (or interrupted) was killed with its children.
    BROWSER_KILLED = "browser_killed"
    #: The configured solver gave a captcha token.
    CAPTCHA_SOLVED = "captcha_solved"
    #: The pool asked the solving service for a solve (``createTask``), ahead of the lookups.
    CAPTCHA_SOLVE_ASKED = "captcha_solve_asked"
    #: A solve asked ahead ended: ``ready`` (delivered, paid) or ``failed`` (not delivered,
    #: not paid), or ``wasted`` (aged out in the pool unused).
    CAPTCHA_SOLVE_ENDED = "captcha_solve_ended"
    #: An attempt ended with a token: ``used``, ``refused`` (sent; the site said no),
    #: ``returned`` (never sent, back to the pool) or ``wasted``.
    CAPTCHA_TOKEN_SETTLED = "captcha_token_settled"
    #: Recording what became of an attempt's token failed (database trouble); the attempt's
    #: report is written anyway.
    CAPTCHA_SETTLE_FAILED = "captcha_settle_failed"
    #: The solving service cannot serve the account (down, no balance, a bad key, the day's
    #: limit): nothing is asked of it until its probe succeeds; lookups wait, uncharged.
    CAPTCHA_SERVICE_PAUSED = "captcha_service_paused"
    #: The solving service answered its probe: solves are asked again.
    CAPTCHA_SERVICE_RESUMED = "captcha_service_resumed"
    #: A round of the token pool (polls, asks, expiries) failed; the next round runs anyway.
    CAPTCHA_POOL_FAILED = "captcha_pool_failed"
    #: A re-check (refresh, bulk run) ended with a different census answer than before:
    #: the changed fields with their previous and current values (never the cédula).
    LOOKUP_RESULT_CHANGED = "lookup_result_changed"
    #: A bulk run (census_lookup or the periodic re-check) selected its members.
    BULK_RUN_STARTED = "bulk_run_started"
    #: A bulk run queued a batch of lookups (as many as fit in its window).
    BULK_RUN_FED = "bulk_run_fed"
    #: Every member of a bulk run has a final status.
    BULK_RUN_FINISHED = "bulk_run_finished"
    #: A bulk run was cancelled: nothing more is fed; what was queued finishes.
    BULK_RUN_CANCELLED = "bulk_run_cancelled"
    #: The periodic re-check schedule was installed or removed to match CENSUS_RECHECK_AFTER.
    RECHECK_SCHEDULE_SYNCED = "recheck_schedule_synced"
    #: A leader asked for a new lookup and it was queued.
    REFRESH_REQUESTED = "refresh_requested"
    #: A leader asked for a new lookup while one was in flight; nothing was queued.
    REFRESH_SKIPPED = "refresh_skipped"
    #: Someone who is not a leader asked for a new lookup.
    REFRESH_DENIED = "refresh_denied"
    #: A refresh was refused for its timing: the lookup ended less than
    #: ``CENSUS_REFRESH_COOLDOWN`` ago, or its requester reached ``CENSUS_REFRESH_PER_HOUR``.
    REFRESH_THROTTLED = "refresh_throttled"
    #: A receiver of a census signal raised; with its traceback. The others still ran.
    RECEIVER_FAILED = "receiver_failed"
    #: A follow-up's try was queued (now, or scheduled for ``due_at``).
    FOLLOW_UP_QUEUED = "follow_up_queued"
    #: A follow-up ran to success; the next one in its chain is queued.
    FOLLOW_UP_SUCCEEDED = "follow_up_succeeded"
    #: A follow-up's try raised: retried on its ladder (``will_retry``) or failed for good.
    FOLLOW_UP_FAILED = "follow_up_failed"
    #: An operator paused all census traffic (census_pause): nothing is sent until resumed.
    CENSUS_PAUSED = "census_paused"
    #: The pause was lifted; the waiting lookups are queued again.
    CENSUS_RESUMED = "census_resumed"
    #: A task started while census is paused: it claimed and sent nothing; the lookup is
    #: queued again on resume.
    ATTEMPT_HELD = "attempt_held"
    #: Census's successful Django-Q2 task rows past CENSUS_TASK_RETENTION were deleted.
    TASKS_PRUNED = "tasks_pruned"
    #: The sweeper found a follow-up whose task was lost (killed worker, lost message,
    #: failed enqueue) and queued it again.
    FOLLOW_UP_RESUMED = "follow_up_resumed"

    @property
    def level(self) -> str:
        """``info``, ``warning`` or ``error`` (the last always with a traceback)."""
        return _LEVELS.get(self, "info")


_LEVELS: dict[Event, str] = {
    Event.ATTEMPT_CRASHED: "error",
    Event.ATTEMPT_LOST: "warning",
    Event.LOOKUP_RESUMED: "warning",
    Event.ENQUEUE_FAILED: "error",
    Event.SWEEP_FAILED: "error",
    Event.SCHEDULER_TICK_FAILED: "error",
    Event.BREAKER_OPENED: "warning",
    Event.SITE_CHANGED: "warning",
    Event.SNAPSHOT_KEPT: "warning",
    Event.SNAPSHOT_FAILED: "error",
    Event.GATE_RECORD_FAILED: "error",
    Event.GATE_CONFIRM_FAILED: "error",
    Event.DATABASE_RETRY: "warning",
    Event.BROWSER_KILLED: "warning",
    Event.REFRESH_DENIED: "warning",
    Event.REFRESH_THROTTLED: "warning",
    Event.RECEIVER_FAILED: "error",
    Event.CENSUS_PAUSED: "warning",
    Event.FOLLOW_UP_FAILED: "error",
    Event.FOLLOW_UP_RESUMED: "warning",
    Event.CAPTCHA_SETTLE_FAILED: "error",
    Event.CAPTCHA_SERVICE_PAUSED: "warning",
    Event.CAPTCHA_POOL_FAILED: "error",
}

logger = structlog.get_logger("census")


def emit(event: Event, **fields: Any) -> None:
    """Log ``event`` at its level; ``error`` events carry the exception being handled."""
    if event.level == "error":
        logger.exception(event.value, **fields)
    else:
        getattr(logger, event.level)(event.value, **fields)


@contextmanager
def about(lookup_id: int, step: int) -> Iterator[None]:
    """Every line logged inside names this lookup and step, and none after it (structlog's
    contextvars, restored on exit): the one way the task, the hook and the sweeper say what
    they work on. Threads started inside carry it only if given a copy of the context."""
    with structlog.contextvars.bound_contextvars(lookup_id=lookup_id, step=step):
        yield
