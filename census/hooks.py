"""Django-Q2 result hooks. They run in the cluster's monitor process, one at a time: keep short.

Django-Q2 calls a hook again on redelivery and on any later save of the task row;
``conclude_attempt`` ignores every call but the first for an attempt.
"""

from __future__ import annotations

from django_q.models import Task

from census.outcomes import Outcome
from census.pipeline import AttemptReport, conclude_attempt


def attempt_finished(task: Task) -> None:
    """Classify a finished attempt and finalise the lookup or schedule the next attempt."""
    lookup_id, attempt = (int(arg) for arg in task.args)
    report = report_from_task(task, lookup_id, attempt)
    if report.skipped:  # a duplicate delivery that did nothing: the real run reports
        return
    conclude_attempt(report, task_id=str(task.id))


def report_from_task(task: Task, lookup_id: int, attempt: int) -> AttemptReport:
    """The task's own report, or a ``task_failed`` one when the task raised or timed out."""
    if task.success and isinstance(task.result, AttemptReport):
        return task.result
    # On failure Django-Q2 stores "message : traceback"; keep the message's last line only.
    text = str(task.result or "task failed").split(" : Traceback", 1)[0].strip()
    return AttemptReport(
        lookup_id=lookup_id,
        attempt=attempt,
        outcome=Outcome.TASK_FAILED,
        detail=text.splitlines()[-1][:300] if text else "task failed",
    )
