"""Finds lookups that nothing will move forward any more, and moves them.

Hooks can be lost (Django-Q2 swallows a failing hook, and skips the hook of a second copy of
a task), workers die mid-task (with Redis their message is gone for good), and queued tasks
can vanish (deleted, or the enqueue at commit failed). Each pass handles one case:

- **reported**: the attempt's row holds its outcome but the lookup is still SCRAPING a few
  seconds later: concluded from the row (no hook needed);
- **stuck**: SCRAPING well past the task timeout with no outcome: concluded as ``lost``
  (or ``task_failed`` when Django-Q2 saved a failed task), which is retried;
- **stalled**: PENDING or RETRYING past its due time with no schedule and no queued task:
  its attempt is queued again.

Every lookup is handled in a guard of its own: one that fails is logged and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone
from django_q.models import Task

from census import events, followups
from census.conf import settings
from census.events import Event
from census.gate import pause
from census.lookup.conclude import conclude_attempt
from census.lookup.report import record_failure
from census.lookup.status import locked
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome
from census.q2 import queue
from census.q2.queue import queue_now

#: Seconds an attempt's report may wait for its hook before the sweeper concludes it.
REPORT_GRACE_SECONDS = 5


def sweep(now: datetime | None = None) -> int:
    """Run every pass; returns how many lookups (and follow-ups) were moved."""
    now = now or timezone.now()
    return sweep_reported(now) + sweep_stuck(now) + sweep_stalled(now) + sweep_follow_ups(now)


def sweep_reported(now: datetime | None = None) -> int:
    """Conclude attempts whose report is on their row but whose hook never concluded them."""
    cutoff = (now or timezone.now()) - timedelta(seconds=REPORT_GRACE_SECONDS)
    rows = Attempt.objects.filter(
        lookup__status=Status.SCRAPING,
        step=F("lookup__step"),
        finished_at__lt=cutoff,
    ).exclude(outcome="")
    return _each(rows.values_list("lookup_id", "step"), _conclude)


def sweep_stuck(now: datetime | None = None) -> int:
    """Conclude attempts running well past the task timeout, as lost (retriable)."""
    grace = settings.task_timeout + settings.sweep_seconds
    cutoff = (now or timezone.now()) - timedelta(seconds=grace)
    stuck = CedulaInfo.objects.filter(status=Status.SCRAPING, status_changed_at__lt=cutoff)
    return _each(stuck.values_list("pk", "step"), _conclude_lost)


def sweep_stalled(now: datetime | None = None) -> int:
    """Queue again PENDING/RETRYING lookups whose task is neither scheduled nor queued
    (not while census is paused: ``census_resume`` queues them all)."""
    if pause.current() is not None:
        return 0
    now = now or timezone.now()
    waiting = queue.queued_task_names()
    grace = timedelta(seconds=stalled_after(known=waiting is not None))
    pending = CedulaInfo.objects.filter(status=Status.PENDING, status_changed_at__lt=now - grace)
    retrying = CedulaInfo.objects.filter(status=Status.RETRYING, next_attempt_at__lt=now - grace)
    stalled = [*pending.values_list("pk", "step"), *retrying.values_list("pk", "step")]

    def queue_again(lookup_id: int, step: int) -> bool:
        return _resume(lookup_id, step, waiting or set())

    return _each(stalled, queue_again)


def requeue_waiting() -> int:
    """After a pause: queue again every PENDING/RETRYING lookup with no queued task and no
    schedule due, oldest due first (the gate spaces them at the site's pace)."""
    waiting = queue.queued_task_names() or set()
    lookups = CedulaInfo.objects.filter(status__in=(Status.PENDING, Status.RETRYING)).order_by(
        F("next_attempt_at").asc(nulls_first=True), "status_changed_at"
    )

    def queue_again(lookup_id: int, step: int) -> bool:
        return _resume(lookup_id, step, waiting)

    return _each(lookups.values_list("pk", "step"), queue_again)


def sweep_follow_ups(now: datetime | None = None) -> int:
    """Follow-ups whose run or queued task was lost are queued again (``census.followups``)."""
    waiting = queue.queued_task_names(prefix="census-followup-")
    try:
        return followups.requeue_lost(
            now or timezone.now(),
            stalled_after=stalled_after(known=waiting is not None),
            waiting=waiting,
        )
    except Exception:
        events.emit(Event.SWEEP_FAILED, follow_ups=True)
        return 0


def stalled_after(known: bool = True) -> float:
    """Seconds past its due time before a waiting lookup with no visible task is queued again.

    The ORM broker lists tasks a cluster has taken; with Redis (or a broker that cannot be
    read) a task held in a cluster's memory is invisible, so it gets a task's lifetime more.
    """
    if known and queue.broker_lists_taken_tasks():
        return settings.sweep_seconds
    return settings.sweep_seconds + settings.task_timeout


def _each(items: Iterable[tuple[int, int]], handle: Callable[[int, int], bool]) -> int:
    moved = 0
    for lookup_id, step in list(items):
        with events.about(lookup_id, step):
            try:
                moved += bool(handle(lookup_id, step))
            except Exception:
                events.emit(Event.SWEEP_FAILED, lookup_id=lookup_id, step=step)
    return moved


def _conclude(lookup_id: int, step: int) -> bool:
    return conclude_attempt(lookup_id, step)


def _conclude_lost(lookup_id: int, step: int) -> bool:
    row = Attempt.objects.filter(lookup_id=lookup_id, step=step).first()
    if row is not None and not row.outcome:
        task = Task.objects.filter(id=row.task_id).first() if row.task_id else None
        if task is not None and not task.success:
            record_failure(lookup_id, step, row.task_id, str(task.result or "task failed"))
        else:
            events.emit(Event.ATTEMPT_LOST, lookup_id=lookup_id, step=step)
            Attempt.objects.filter(pk=row.pk, outcome="").update(
                outcome=Outcome.LOST.value,
                finished_at=timezone.now(),
                error="the attempt never reported back (worker stopped?)",
            )
    elif row is None:
        events.emit(Event.ATTEMPT_LOST, lookup_id=lookup_id, step=step)
        Attempt.objects.create(
            lookup_id=lookup_id,
            step=step,
            outcome=Outcome.LOST.value,
            finished_at=timezone.now(),
            error="the attempt never reported back (worker stopped?)",
        )
    return conclude_attempt(lookup_id, step)


def _resume(lookup_id: int, step: int, waiting: set[str]) -> bool:
    if queue.task_name(lookup_id, step) in waiting or queue.is_scheduled(lookup_id, step):
        return False
    with locked(lookup_id) as info:
        if info is None or info.step != step:
            return False
        if info.status not in (Status.PENDING, Status.RETRYING):
            return False
        status = info.status
    events.emit(Event.LOOKUP_RESUMED, lookup_id=lookup_id, step=step, status=status)
    return queue_now(lookup_id, step)
