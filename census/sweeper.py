"""Finds attempts that never reported back and concludes them.

A hook can be lost: Django-Q2 swallows a failing hook, and a worker killed mid-task (OOM,
SIGKILL) reports nothing (with Redis its message is gone for good). An attempt still in
SCRAPING well after its task timeout is concluded from its task row if Django-Q2 saved one,
else as ``lost`` (retriable). A lookup in RETRYING long past its due time whose schedule is
gone (its task failed before it could claim the attempt) gets its attempt scheduled again.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_q.models import Schedule, Task

from census import events
from census.conf import settings
from census.hooks import report_from_task
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome
from census.pipeline import AttemptReport, conclude_attempt, schedule_attempt, task_name
from census.transitions import locked

#: Seconds past the task timeout before an attempt counts as lost.
GRACE_SECONDS = 30


def sweep() -> int:
    """Conclude every stuck attempt; returns how many were concluded."""
    cutoff = timezone.now() - timedelta(seconds=settings.task_timeout + GRACE_SECONDS)
    stuck = CedulaInfo.objects.filter(status=Status.SCRAPING, status_changed_at__lt=cutoff)
    count = 0
    for lookup_id, attempt in stuck.values_list("pk", "attempt"):
        conclude_attempt(_report(lookup_id, attempt))
        count += 1
    overdue = CedulaInfo.objects.filter(status=Status.RETRYING, next_attempt_at__lt=cutoff)
    for lookup_id, attempt in overdue.values_list("pk", "attempt"):
        count += _reschedule(lookup_id, attempt)
    return count


def _reschedule(lookup_id: int, attempt: int) -> int:
    with locked(lookup_id) as info:
        name = task_name(lookup_id, attempt)
        if info is None or info.status != Status.RETRYING or info.attempt != attempt:
            return 0
        if Schedule.objects.filter(name=name).exists():
            return 0  # still waiting for a scheduler: not ours to fire
        events.warning(events.ATTEMPT_LOST, lookup_id=lookup_id, attempt=attempt, status="retrying")
        schedule_attempt(lookup_id, attempt, timezone.now())
        return 1


def _report(lookup_id: int, attempt: int) -> AttemptReport:
    task_id = (
        Attempt.objects.filter(lookup_id=lookup_id, number=attempt)
        .values_list("task_id", flat=True)
        .first()
    )
    task = Task.objects.filter(id=task_id).first() if task_id else None
    if task is not None:
        return report_from_task(task, lookup_id, attempt)
    events.warning(events.ATTEMPT_LOST, lookup_id=lookup_id, attempt=attempt)
    return AttemptReport(
        lookup_id=lookup_id,
        attempt=attempt,
        outcome=Outcome.LOST,
        detail="the attempt never reported back (worker stopped?)",
    )
