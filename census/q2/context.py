"""What Django-Q2 tells the task it runs: its task id (set by ``census.receivers`` from
Django-Q2's ``pre_execute`` signal, read by the attempt and follow-up tasks to claim their
work)."""

from __future__ import annotations

from contextvars import ContextVar

#: The id of the Django-Q2 task running census's work in this context ("" outside one).
current_task_id: ContextVar[str] = ContextVar("census_current_task_id", default="")
