"""census.maintenance.sweeper on lookups nothing else will move, driven in-process."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule
from structlog.testing import capture_logs

from census.events import Event
from census.lookup import attempt as attempt_task
from census.models import Attempt, CedulaInfo, Status
from tests.driving import clear_queue, drive, queued, run_and_hook

pytestmark = pytest.mark.django_db


def test_lost_attempt_is_swept_and_retried(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """An attempt stuck in SCRAPING past its timeout (its worker died) is retried as lost."""
    from census.maintenance import sweeper

    info = new_lookup("found")
    attempt_task._claim(info.pk, 1, "t-killed")
    CedulaInfo.objects.filter(pk=info.pk).update(
        status_changed_at=timezone.now() - timezone.timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeper.sweep() == 1
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    assert Attempt.objects.get(lookup=info, step=1).outcome == "lost"


def test_retry_whose_task_failed_before_claiming_is_queued_again(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A RETRYING lookup long overdue with no schedule and no queued task is queued again."""
    from census.maintenance import sweeper

    info = new_lookup("timeout", "found")
    clear_queue()
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    Schedule.objects.all().delete()  # fired, but its task died before claiming attempt 2
    CedulaInfo.objects.filter(pk=info.pk).update(
        next_attempt_at=timezone.now() - timezone.timedelta(hours=1)
    )
    with capture_logs() as logs:
        assert sweeper.sweep() == 1
    assert [p["args"] for p in queued()] == [(info.pk, 2)]
    assert [e["event"] for e in logs] == [Event.LOOKUP_RESUMED]
    assert sweeper.sweep() == 0  # its task is queued now: nothing more to do
    info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND


@pytest.mark.parametrize(("setting", "grace"), [(30, 30.0), (10, 10.0), (1, 5.0)])
def test_the_grace_before_an_attempt_counts_as_lost_is_the_sweep_setting(
    new_lookup: Any, settings: Any, setting: float, grace: float
) -> None:
    """``CENSUS_SWEEP_SECONDS`` past the task timeout (at least 5 s) an attempt is lost, and
    not a second before."""
    from census.conf import settings as census_settings
    from census.maintenance import sweeper

    settings.CENSUS_SWEEP_SECONDS = setting
    info = new_lookup("found")
    attempt_task._claim(info.pk, 1, "t-killed")
    started = timezone.now()
    CedulaInfo.objects.filter(pk=info.pk).update(status_changed_at=started)
    limit = census_settings.task_timeout + grace
    assert sweeper.sweep_stuck(started + timezone.timedelta(seconds=limit - 1)) == 0
    assert sweeper.sweep_stuck(started + timezone.timedelta(seconds=limit + 1)) == 1
