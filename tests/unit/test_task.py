"""census.lookup.attempt: claiming an attempt, duplicates and stale work, what the task returns."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from django_q.models import Task
from structlog.testing import capture_logs

from census.events import Event
from census.lookup import attempt as attempt_task
from census.models import Status
from census.q2 import hooks, queue
from census.testing import fake
from tests.driving import drive, queued, run_and_hook

pytestmark = pytest.mark.django_db


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
    assert report == {"lookup_id": info.pk, "step": 1, "outcome": "not_found"}
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


def test_first_attempt_is_queued_with_ids_only(new_lookup: Any) -> None:
    """The queued task carries the lookup id and attempt number, a readable name and group."""
    info = new_lookup("found")
    [package] = queued()
    assert package["func"] == queue.TASK_FUNC
    assert package["args"] == (info.pk, 1)
    assert package["name"] == f"census-lookup-{info.pk}-step-1"
    assert package["group"] == "census-lookup"
    assert package["hook"] == "census.q2.hooks.attempt_finished"
    assert package["ack_failure"] is True
    assert info.user.username not in repr(package)


def test_the_deferral_ticket_is_stored_and_read_by_the_next_claim(
    new_lookup: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A deferral by the closed gate stores the ticket; the next claim passes it to the
    gate; the conclusion after that clears it. (The claim used to infer it from the
    previous attempt row.)"""
    from datetime import timedelta

    from django.utils import timezone

    from census.gate.waiter import DEFAULT_NAME
    from census.models import CedulaInfo, RateGate

    gate = RateGate.objects.create(
        name=DEFAULT_NAME,
        next_allowed_at=timezone.now(),
        breaker_until=timezone.now() + timedelta(seconds=30),
    )
    info = new_lookup("found")
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    info.refresh_from_db()
    assert (info.status, info.ticketed) == (Status.RETRYING, True)

    seen: list[bool] = []
    real = attempt_task._lookup

    def spy(raw: str, ticketed: bool, on_sent: Any, **where: int) -> Any:
        seen.append(ticketed)
        return real(raw, ticketed, on_sent, **where)

    monkeypatch.setattr(attempt_task, "_lookup", spy)
    RateGate.objects.filter(pk=gate.pk).update(breaker_until=None, defer_cursor=None)
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, info.step)
    info = CedulaInfo.objects.get(pk=info.pk)
    assert seen == [True]
    assert (info.status, info.ticketed) == (Status.FOUND, False)
