"""The lookup pipeline, by name: registration -> attempts on Django-Q2 -> a final status.

This module only re-exports (nothing inside the package imports it); each step lives in a
module of its own:

- ``start_lookup`` (``census.registration``; from the user ``post_save`` receiver) creates
  the lookup and queues attempt 1 once the registration commits.
- ``run_attempt`` (``census.task``) is the Django-Q2 task: it claims the attempt, calls the
  scraper and writes the attempt's report (``census.reports``) to its ``Attempt`` row before
  returning. It is queued as ``census.pipeline.run_attempt``: the path of tasks already queued
  by earlier versions, kept stable here.
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

from census.conclusion import conclude_attempt
from census.queue import queue_now
from census.refresh import request_refresh
from census.registration import start_lookup
from census.reports import record_failure
from census.task import ScraperCrashed, current_task_id, run_attempt

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
