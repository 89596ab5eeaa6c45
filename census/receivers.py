"""Receivers: a new user gets a lookup (if ``CENSUS_LOOKUP_FOR`` says so); Django-Q2 tells an
attempt its task id."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.db.models.signals import post_save
from django_q.signals import pre_execute

from census.lookup import start
from census.q2 import queue
from census.q2.context import current_task_id


def user_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """Only brand-new users, and not fixture loads (``raw``)."""
    if created and not raw:
        start.on_registration(instance)


def task_starting(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    if task.get("func") in queue.CLAIMING_FUNCS:
        current_task_id.set(str(task.get("id", "")))


def connect() -> None:
    post_save.connect(
        user_saved, sender=django_settings.AUTH_USER_MODEL, dispatch_uid="census.user_saved"
    )
    pre_execute.connect(task_starting, dispatch_uid="census.task_starting")
