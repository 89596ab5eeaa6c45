"""The periodic re-check (``CENSUS_RECHECK_AFTER``): a daily Django-Q2 schedule
(``census-recheck``) at ``CENSUS_RECHECK_HOUR`` that opens, or resumes, a background run over
the final lookups older than the setting."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from census import events
from census.bulk.runs import open_run
from census.bulk.selection import Selection
from census.conf import settings
from census.events import Event
from census.models import BulkRun
from census.q2 import queue


def next_recheck_at(now: datetime | None = None) -> datetime:
    """The next ``CENSUS_RECHECK_HOUR``:00 in the project's time zone."""
    local = timezone.localtime(now or timezone.now())
    due = local.replace(hour=settings.recheck_hour, minute=0, second=0, microsecond=0)
    return due if due > local else due + timedelta(days=1)


def sync_recheck_schedule(**kwargs: Any) -> None:
    """Install the daily re-check schedule when ``CENSUS_RECHECK_AFTER`` is set; else remove it.

    Runs after ``migrate`` and when a qcluster worker starts.
    """
    after = settings.recheck_after_seconds
    if queue.set_recheck_schedule(next_recheck_at() if after else None):
        events.emit(
            Event.RECHECK_SCHEDULE_SYNCED,
            installed=bool(after),
            recheck_after_s=after,
            hour=settings.recheck_hour,
        )


def start_recheck() -> dict[str, Any]:
    """The daily task: a background run re-checking final lookups older than the setting."""
    after = settings.recheck_after_seconds
    if not after:
        sync_recheck_schedule()
        return {"started": False}
    run, resumed = open_run(
        Selection(older_than_s=after),
        requested_by=None,
        kind=BulkRun.Kind.RECHECK,
        background=True,
    )
    return {"run_id": run.pk if run else None, "resumed": resumed}
