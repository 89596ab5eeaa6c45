"""Play Django-Q2's part by hand: run an attempt's task, store its Task row, fire the hook."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Task

from census.lookup import attempt as attempt_task
from census.models import CedulaInfo
from census.q2 import hooks, queue


def queued() -> list[dict[str, Any]]:
    """Task packages waiting in the broker (ORM or Redis), oldest first."""
    return queue.queued_packages() or []


def clear_queue() -> None:
    """Lose every queued task, as a deleted row or a Redis message gone with its cluster."""
    get_broker().purge_queue()


def run_and_hook(lookup_id: int, attempt: int, task_id: str | None = None) -> Task:
    """Play Django-Q2: run the task, store its Task row, fire the hook."""
    task = Task(
        id=task_id or f"t{lookup_id}x{attempt}",
        name=queue.task_name(lookup_id, attempt),
        func=queue.TASK_FUNC,
        args=(lookup_id, attempt),
        started=timezone.now(),
        stopped=timezone.now(),
    )
    attempt_task.current_task_id.set(task.id)
    try:
        task.result = attempt_task.run_attempt(lookup_id, attempt)
        task.success = True
    except Exception as exc:
        task.result = f"{exc} : Traceback (most recent call last): ..."
        task.success = False
    hooks.attempt_finished(task)
    return task


def drive(info: CedulaInfo, capture: Any) -> CedulaInfo:
    """Run the lookup's current attempt with ``run_and_hook`` until the lookup is final.

    Each pass runs ``info.step`` at once, inside ``capture(execute=True)`` (pytest-django's
    ``django_capture_on_commit_callbacks``) so the hook's on-commit callbacks run. It does not
    fire schedules: a retry's or deferral's due time (``next_attempt_at``) is not waited for,
    and its ONCE ``Schedule`` row, like any task package in the broker, stays where it is.
    At most 20 attempts; then AssertionError.
    """
    for _ in range(20):
        info.refresh_from_db()
        if info.current_status.is_final:
            return info
        with capture(execute=True):
            run_and_hook(info.pk, info.step)
    raise AssertionError("lookup never finished")
