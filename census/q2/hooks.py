"""Django-Q2 result hooks: thin adapters. They run in the cluster's monitor, one at a time.

Django-Q2 calls a hook again on redelivery and on any later save of the task row, and skips
it when another copy of the task saved its result first; ``conclude_attempt`` reads the
attempt's own row, so any call concludes it at most once, and the sweeper concludes what no
hook did.
"""

from __future__ import annotations

from django_q.models import Task

from census import events
from census.events import Event
from census.lookup.conclude import conclude_attempt
from census.lookup.report import record_failure


def attempt_finished(task: Task) -> None:
    """Classify a finished attempt and finalise the lookup, schedule a retry, or defer it."""
    try:
        lookup_id, step = (int(arg) for arg in task.args)
    except (TypeError, ValueError):
        events.emit(Event.ATTEMPT_IGNORED, reason="task arguments are not (lookup, attempt)")
        return
    with events.about(lookup_id, step):
        task_id = str(task.id)
        if not task.success:
            record_failure(lookup_id, step, task_id, str(task.result or "task failed"))
        conclude_attempt(lookup_id, step, task_id=task_id)
