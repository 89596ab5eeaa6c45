"""Task table upkeep: census prunes its own successful Django-Q2 task rows.

Django-Q2 keeps every result (the recommended ``save_limit: 0``) and prunes nothing, so
``django_q_task`` grows by a row per attempt and follow-up. Every hour one worker deletes
census's successful rows (lookup attempts and follow-ups, told apart by ``func``) that
stopped more than ``CENSUS_TASK_RETENTION`` ago, except an attempt's whose lookup is still
in that step (its hook or the sweeper has yet to conclude it). Failed rows and other apps'
tasks are never touched: a failure's text is what an operator reads first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from census import events
from census.conf import settings
from census.events import Event
from census.models import CedulaInfo, Status
from census.observability import snapshots
from census.q2 import queue


def prune_tasks(now: datetime | None = None) -> int:
    """Delete census's successful task rows past the retention; returns how many."""
    retention = settings.task_retention_seconds
    if retention is None:
        return 0
    cutoff = (now or timezone.now()) - timedelta(seconds=retention)
    # An attempt still in flight keeps its row, however old (the sweeper reads it).
    in_flight = [
        queue.task_name(pk, step)
        for pk, step in CedulaInfo.objects.filter(status=Status.SCRAPING).values_list("pk", "step")
    ]
    deleted = queue.delete_succeeded_tasks(before=cutoff, keep=set(in_flight))
    if deleted:
        events.emit(Event.TASKS_PRUNED, deleted=deleted, before=cutoff.isoformat())
    return deleted


def prune(now: datetime | None = None) -> int:
    """The hourly upkeep: old task rows, then snapshots of pages not seen for a while."""
    return prune_tasks(now) + snapshots.prune_snapshots(now=now)
