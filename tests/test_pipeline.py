"""census.pipeline and census.hooks, driven in-process with the scripted fake scraper.

Django-Q2's part is played by hand here (the task is called, then the hook with a Task row);
tests/test_cluster.py runs the same paths through a real qcluster.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule, Task
from structlog.testing import capture_logs

from census import hooks, pipeline, queue
from census import task as attempt_task
from census.events import Event
from census.models import Attempt, CedulaInfo, Status
from census.testing import fake
from tests import factories
from tests.driving import clear_queue, drive, queued, run_and_hook

pytestmark = pytest.mark.django_db


def test_found_at_once(new_lookup: Any, django_capture_on_commit_callbacks: Any) -> None:
    """A found answer finalises with the polling place and one attempt in the history."""
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND
    assert info.final_reason == "found"
    assert info.retry_count == 0
    assert info.puesto.startswith("PUESTO") and info.mesa
    assert list(info.attempts.values_list("number", "outcome")) == [(1, "found")]


def test_first_attempt_is_queued_with_ids_only(new_lookup: Any) -> None:
    """The queued task carries the lookup id and attempt number, a readable name and group."""
    info = new_lookup("found")
    [package] = queued()
    assert package["func"] == queue.TASK_FUNC
    assert package["args"] == (info.pk, 1)
    assert package["name"] == f"census-lookup-{info.pk}-attempt-1"
    assert package["group"] == "census-lookup"
    assert package["hook"] == "census.hooks.attempt_finished"
    assert package["ack_failure"] is True
    assert info.user.username not in repr(package)


def test_blocked_then_timeout_then_found(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Two retriable failures are retried on schedule; the third attempt finds the cédula."""
    info = new_lookup("blocked", "timeout", "found")
    with capture_logs() as logs:
        info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND
    assert info.retry_count == 2
    assert list(info.attempts.values_list("number", "outcome")) == [
        (1, "blocked"),
        (2, "timeout"),
        (3, "found"),
    ]
    retrying = [e for e in logs if e.get("to_status") == "retrying"]
    assert [(e["attempt"], e["delay_s"]) for e in retrying] == [(2, 2.0), (3, 3.0)]
    assert all(e["due_at"] for e in retrying)
    moves = [
        (e["from_status"], e["to_status"]) for e in logs if e["event"] == "lookup_status_changed"
    ]
    assert moves == [
        ("pending", "scraping"),
        ("scraping", "retrying"),
        ("retrying", "scraping"),
        ("scraping", "retrying"),
        ("retrying", "scraping"),
        ("scraping", "found"),
    ]


def test_retry_is_a_once_schedule_due_after_the_delay(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A retriable failure moves to RETRYING and schedule()s the next attempt at now + delay."""
    info = new_lookup("timeout", "found")
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    assert (info.attempt, info.retry_count) == (2, 1)
    [entry] = Schedule.objects.all()
    assert entry.schedule_type == Schedule.ONCE
    assert entry.name == f"census-lookup-{info.pk}-attempt-2"
    assert entry.hook == queue.HOOK
    assert 1.5 <= (entry.next_run - before).total_seconds() <= 3
    assert entry.next_run == info.next_attempt_at
    assert info.last_retry_scheduled_at is not None


def test_three_failures_end_in_error_with_details(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """After the last attempt the lookup is ERROR; every attempt is summarised in raw_response."""
    info = new_lookup("blocked", "captcha_failed", "connection_error")
    with capture_logs() as logs:
        info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.ERROR
    assert info.final_reason == "connection_error"
    assert info.retry_count == 2
    assert "gave up after 3 attempt(s)" in info.raw_response
    for outcome in ("blocked", "captcha_failed", "connection_error"):
        assert outcome in info.raw_response
    [final] = [e for e in logs if e.get("to_status") == "error"]
    assert final["reason"] == "connection_error" and final["exhausted"] is True
    assert final["age_s"] >= 0  # registration to final, for time-to-final charts
    # Attempts 2 and 3 were scheduled; nothing after the last one.
    assert sorted(Schedule.objects.values_list("name", flat=True)) == [
        f"census-lookup-{info.pk}-attempt-2",
        f"census-lookup-{info.pk}-attempt-3",
    ]


def test_raw_response_is_bounded(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """CENSUS_RAW_RESPONSE_LIMIT caps the stored details (never below 200 characters)."""
    settings.CENSUS_RAW_RESPONSE_LIMIT = 40
    settings.CENSUS_MAX_ATTEMPTS = 9
    info = drive(new_lookup("timeout"), django_capture_on_commit_callbacks)
    assert info.status == Status.ERROR
    assert len(info.raw_response) == 200


def test_scraper_exception_is_retried_and_scrubbed(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A crash inside the scraper fails the task, the hook retries, the cédula is not stored."""
    info = new_lookup("raise", "found")
    with django_capture_on_commit_callbacks(execute=True):
        task = run_and_hook(info.pk, 1)
    assert task.success is False
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    attempt = info.attempts.get(number=1)
    assert attempt.outcome == "task_failed"
    assert "ScriptedFailure" in attempt.error
    assert info.user.username not in task.result
    info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND


def test_invalid_cedula_is_a_permanent_error_without_retry(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A username that is not a cédula ends in ERROR at once, reason invalid_cedula."""
    info = drive(new_lookup(username="ana.perez"), django_capture_on_commit_callbacks)
    assert info.status == Status.ERROR
    assert info.final_reason == "invalid_cedula"
    assert info.retry_count == 0
    assert "3 to 10 digits" in info.raw_response


def test_duplicate_hook_changes_nothing(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Django-Q2 re-fires hooks on redelivery and re-save: the second call is ignored."""
    info = new_lookup("timeout", "found")
    with django_capture_on_commit_callbacks(execute=True):
        task = run_and_hook(info.pk, 1)
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        hooks.attempt_finished(task)
    info.refresh_from_db()
    assert (info.status, info.attempt, info.retry_count) == (Status.RETRYING, 2, 1)
    assert Schedule.objects.count() == 1
    assert [e["event"] for e in logs] == [Event.ATTEMPT_IGNORED]


def test_stale_attempt_does_not_run(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A task for an attempt that is no longer current neither scrapes nor moves the status."""
    info = new_lookup("timeout", "found")
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    report = attempt_task.run_attempt(info.pk, 1)
    assert report["skipped"] is True
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    assert info.attempts.count() == 1


def test_second_delivery_while_running_is_skipped(new_lookup: Any) -> None:
    """One attempt in flight: a second delivery of the same task id sends nothing."""
    info = new_lookup("found")
    attempt_task._claim(info.pk, 1, "t1")  # the first delivery is mid-scrape
    attempt_task.current_task_id.set("t1")
    with capture_logs() as logs:
        report = attempt_task.run_attempt(info.pk, 1)
    assert report["skipped"] is True
    assert [e.get("reason") for e in logs] == ["duplicate delivery"]
    assert fake._memory_counts == {}  # the scraper was never called
    hooks.attempt_finished(Task(id="t1", args=(info.pk, 1), success=True, result=report))
    info.refresh_from_db()
    assert info.status == Status.SCRAPING  # no report on the row yet: nothing to conclude


def test_task_result_is_plain_data_without_the_cedula(new_lookup: Any) -> None:
    """The task returns a small dict of literals (no class to unpickle), and no cédula."""
    info = new_lookup("not_found")
    report = attempt_task.run_attempt(info.pk, 1)
    assert report == {"lookup_id": info.pk, "attempt": 1, "outcome": "not_found"}
    assert info.user.username.encode() not in pickle.dumps(report)


def test_events_mask_the_cedula(new_lookup: Any, django_capture_on_commit_callbacks: Any) -> None:
    """No event carries the full cédula; attempt_started carries its masked form."""
    info = new_lookup("timeout", "found")
    with capture_logs() as logs:
        drive(info, django_capture_on_commit_callbacks)
    number = info.user.username
    assert number not in repr(logs)
    started = [e for e in logs if e["event"] == Event.ATTEMPT_STARTED]
    assert started and started[0]["cedula"] == "*******" + number[-3:]


# -- refresh ---------------------------------------------------------------------------------


def test_leader_refresh_starts_a_fresh_budget(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A leader's refresh of a finished lookup queues a new attempt with retry_count 0."""
    info = drive(
        new_lookup("timeout", "timeout", "timeout", "found"), django_capture_on_commit_callbacks
    )
    assert info.status == Status.ERROR
    leader = factories.leader()
    clear_queue()
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        assert pipeline.request_refresh(info, requested_by=leader) is True
    info.refresh_from_db()
    assert (info.status, info.retry_count, info.attempt) == (Status.PENDING, 0, 4)
    assert [p["args"] for p in queued()] == [(info.pk, 4)]
    assert Event.REFRESH_REQUESTED in [e["event"] for e in logs]
    info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND and info.raw_response == ""


def test_permission_holder_may_refresh(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The default rule admits users with census.refresh_cedulainfo."""
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    with override_settings(CENSUS_IS_LEADER="census.permissions.is_leader"):
        assert pipeline.request_refresh(info, requested_by=factories.permission_holder())
        with pytest.raises(PermissionDenied):
            pipeline.request_refresh(info, requested_by=factories.leader())


def test_non_leader_refresh_is_denied_and_logged(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A member's refresh raises PermissionDenied, queues nothing and emits refresh_denied."""
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    member = factories.member()
    clear_queue()
    with capture_logs() as logs, pytest.raises(PermissionDenied):
        pipeline.request_refresh(info, requested_by=member)
    assert [e["event"] for e in logs] == [Event.REFRESH_DENIED]
    assert queued() == []
    info.refresh_from_db()
    assert info.status == Status.FOUND


def test_refresh_in_flight_is_refused(new_lookup: Any) -> None:
    """A lookup still pending is not queued twice."""
    info = new_lookup("found")
    leader = factories.leader()
    with capture_logs() as logs:
        assert pipeline.request_refresh(info, requested_by=leader) is False
    assert [p["args"] for p in queued()] == [(info.pk, 1)]
    assert [e["event"] for e in logs] == [Event.REFRESH_SKIPPED]


def test_lost_attempt_is_swept_and_retried(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """An attempt stuck in SCRAPING past its timeout (its worker died) is retried as lost."""
    from census import sweeper

    info = new_lookup("found")
    attempt_task._claim(info.pk, 1, "t-killed")
    CedulaInfo.objects.filter(pk=info.pk).update(
        status_changed_at=timezone.now() - timezone.timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeper.sweep() == 1
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    assert Attempt.objects.get(lookup=info, number=1).outcome == "lost"


def test_retry_whose_task_failed_before_claiming_is_queued_again(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A RETRYING lookup long overdue with no schedule and no queued task is queued again."""
    from census import sweeper

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
