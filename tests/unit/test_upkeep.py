"""census.maintenance.upkeep: old successful census task rows go; everything else stays."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Task

from census.maintenance import upkeep
from census.models import CedulaInfo, Status
from census.q2 import queue
from tests import factories

pytestmark = pytest.mark.django_db


def task(name: str, func: str, *, days: float, success: bool = True) -> str:
    stopped = timezone.now() - timedelta(days=days)
    row = Task.objects.create(
        id=uuid.uuid4().hex,
        name=name,
        func=func,
        started=stopped,
        stopped=stopped,
        success=success,
    )
    return str(row.id)


def test_prunes_only_census_successes_past_the_retention(settings: Any) -> None:
    """Old successful attempts and follow-ups go; recent ones, failures, other apps' tasks
    and an attempt whose lookup is still in that step stay."""
    settings.CENSUS_TASK_RETENTION = "3d"
    info = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=info.pk).update(status=Status.SCRAPING, step=2)
    gone = [
        task("census-lookup-99-step-1", queue.TASK_FUNC, days=4),
        task("census-followup-99-1.1-notify", queue.FOLLOW_UP_FUNC, days=10),
    ]
    kept = [
        task("census-lookup-98-step-1", queue.TASK_FUNC, days=1),  # recent
        task("census-lookup-97-step-1", queue.TASK_FUNC, days=5, success=False),  # failed
        task("portal-report", "portal.tasks.report", days=30),  # not census's
        task(queue.task_name(info.pk, 2), queue.TASK_FUNC, days=5),  # its step is in flight
    ]
    assert upkeep.prune_tasks() == 2
    remaining = set(Task.objects.values_list("id", flat=True))
    assert remaining == set(kept) and not remaining & set(gone)


def test_no_retention_keeps_everything(settings: Any) -> None:
    """CENSUS_TASK_RETENTION = None turns pruning off."""
    settings.CENSUS_TASK_RETENTION = None
    task("census-lookup-99-step-1", queue.TASK_FUNC, days=400)
    assert upkeep.prune_tasks() == 0
    assert Task.objects.count() == 1


def test_prunes_in_batches(settings: Any, monkeypatch: Any) -> None:
    """More rows than a batch: all of them go."""
    monkeypatch.setattr(queue, "DELETE_BATCH", 2)
    for n in range(5):
        task(f"census-lookup-{n}-step-1", queue.TASK_FUNC, days=7)
    assert upkeep.prune_tasks() == 5
