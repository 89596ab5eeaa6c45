"""The lookup pipeline: registration -> attempts on Django-Q2 -> a final status.

This module holds the registration step and names the others (their homes in brackets):

- ``start_lookup`` (from the user ``post_save`` receiver) creates the lookup and queues attempt 1
  once the registration commits.
- ``run_attempt`` (``census.task``; queued as ``census.pipeline.run_attempt``, a path kept
  stable for tasks already queued) is the Django-Q2 task: it claims the attempt, calls the
  scraper and writes the attempt's full report to its ``Attempt`` row before returning. The
  row, not Django-Q2's pickled result, is the durable report.
- ``conclude_attempt`` (``census.conclusion``; from the result hook, or the sweeper) reads
  that row and applies the retry policy: it finalises the lookup, moves it to RETRYING and
  ``schedule()``\\ s the next attempt, or defers it (the gate was closed: nothing spent).
- ``request_refresh`` (``census.refresh``) lets a leader start a fresh attempt budget.
- Django-Q2 itself is called from ``census.queue`` only.

Every status change goes through ``census.transitions.transition``. An attempt is claimed by one
Django-Q2 task (``Attempt.task_id``); only that task's hook may conclude it, and a second
delivery of the same task finds it claimed and does nothing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from census.conclusion import conclude_attempt
from census.models import CedulaInfo, Status
from census.queue import queue_now
from census.refresh import request_refresh
from census.task import ScraperCrashed, current_task_id, record_failure, run_attempt
from census.transitions import log_created

__all__ = [
    "ScraperCrashed",
    "conclude_attempt",
    "current_task_id",
    "queue_now",
    "record_failure",
    "request_refresh",
    "run_attempt",
    "start_lookup",
]

# -- registration ---------------------------------------------------------------------------


def start_lookup(user: Any) -> CedulaInfo:
    """Create the user's lookup in PENDING; attempt 1 is queued when the transaction commits."""
    info = CedulaInfo.objects.create(user=user, status=Status.PENDING)
    # robust: a failing enqueue must not break the registration; the sweeper resumes it.
    transaction.on_commit(partial(_queue_first_attempt, info), robust=True)
    return info


def _queue_first_attempt(info: CedulaInfo) -> None:
    # Logged here, not in the transaction: a rolled-back registration must leave no event.
    log_created(info)
    queue_now(info.pk, info.attempt)
