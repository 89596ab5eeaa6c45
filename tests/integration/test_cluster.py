"""The pipeline through a real qcluster subprocess (ORM broker, file SQLite in WAL mode).

Retry delays are 2 and 3 seconds (tests/settings.py); the fake scraper answers from a script.
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from census.models import Attempt, CedulaInfo, Status
from tests import factories
from tests.clusters import wait_until_final

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def register(number: str, logs: list[dict[str, Any]] | None = None) -> CedulaInfo:
    """Create the user here; the registration's own event (-> pending) lands in ``logs``."""
    with capture_logs() as captured:
        user = factories.member(username=number)
    if logs is not None:
        logs.extend(captured)
    return CedulaInfo.objects.get(user=user)


def transitions(events: list[dict[str, Any]], lookup_id: int) -> list[tuple[Any, Any]]:
    return [
        (e["from_status"], e["to_status"])
        for e in events
        if e["event"] == "lookup_status_changed" and e["lookup_id"] == lookup_id
    ]


def test_found_at_once(qcluster: Any) -> None:
    """A registration is looked up in the background and ends FOUND after one attempt."""
    number = factories.cedula()
    cluster = qcluster({number: ["found"]})
    info = register(number)
    [info] = wait_until_final([info.pk], cluster)
    assert info.status == Status.FOUND
    assert info.attempts.count() == 1
    assert info.attempts.get().task_id  # the Django-Q2 task is linked in the history


def test_blocked_then_timeout_then_found_on_time(qcluster: Any) -> None:
    """Two retries run about when due (not on the 30 s scheduler tick) and the third finds it."""
    number = factories.cedula()
    cluster = qcluster({number: ["blocked", "timeout", "found"]})
    events: list[dict[str, Any]] = []
    info = register(number, events)
    [info] = wait_until_final([info.pk], cluster)
    assert info.status == Status.FOUND
    assert info.retry_count == 2
    attempts = list(info.attempts.order_by("step"))
    assert [a.outcome for a in attempts] == ["blocked", "timeout", "found"]
    for retry in attempts[1:]:
        # Django-Q2's own scheduler alone would start these up to 30 s late.
        assert retry.due_at is not None and retry.late_by is not None
        # Django-Q2's own scheduler ticks every 30 s; the census ticker every 0.25 s here. The
        # bound only tells the two apart (a loaded machine adds seconds); ./bench measures it.
        assert -0.5 < retry.late_by < 20, f"attempt {retry.step} late by {retry.late_by:.2f}s"
    events += cluster.events()
    retrying = [e for e in events if e.get("to_status") == "retrying"]
    assert [e["step"] for e in retrying] == [2, 3]
    assert all("due_at" in e and "delay_s" in e for e in retrying)
    assert transitions(events, info.pk) == [
        (None, "pending"),
        ("pending", "scraping"),
        ("scraping", "retrying"),
        ("retrying", "scraping"),
        ("scraping", "retrying"),
        ("retrying", "scraping"),
        ("scraping", "found"),
    ]


def test_three_failures_end_in_error(qcluster: Any) -> None:
    """Three retriable failures use the whole budget and end in ERROR with details kept."""
    number = factories.cedula()
    cluster = qcluster({number: ["timeout", "blocked", "captcha_failed"]})
    info = register(number)
    [info] = wait_until_final([info.pk], cluster)
    assert info.status == Status.ERROR
    assert info.final_reason == "captcha_failed"
    assert info.attempts.count() == 3
    assert "gave up after 3 attempt(s)" in info.raw_response
    assert number not in info.raw_response


def test_exception_inside_the_scraper_is_retried(qcluster: Any) -> None:
    """A scraper crash fails the Django-Q2 task; the hook retries it; no cédula in task rows."""
    from django_q.models import Task

    number = factories.cedula()
    cluster = qcluster({number: ["raise", "found"]})
    info = register(number)
    [info] = wait_until_final([info.pk], cluster)
    assert info.status == Status.FOUND
    assert [a.outcome for a in info.attempts.order_by("step")] == ["task_failed", "found"]
    failed = Task.objects.get(id=info.attempts.get(step=1).task_id)
    assert failed.success is False
    assert "ScriptedFailure" in failed.result
    for task in Task.objects.all():
        assert number not in f"{task.name} {task.args} {task.kwargs} {task.result} {task.group}"


def test_registered_before_the_cluster_starts(qcluster: Any) -> None:
    """Lookups queued while no cluster runs are processed once qcluster starts."""
    numbers = [factories.cedula() for _ in range(3)]
    infos = [register(n) for n in numbers]
    assert {i.status for i in infos} == {Status.PENDING}
    cluster = qcluster({n: ["found"] for n in numbers})
    done = wait_until_final([i.pk for i in infos], cluster)
    assert {i.status for i in done} == {Status.FOUND}


def test_every_status_change_has_one_event(qcluster: Any) -> None:
    """The JSON log holds one lookup_status_changed line per status change in the database."""
    scripts = {
        factories.cedula(): ["found"],
        factories.cedula("20"): ["not_found"],
        factories.cedula(): ["timeout", "cancelled"],
        factories.cedula(): ["blocked", "blocked", "blocked"],
    }
    cluster = qcluster(scripts)
    logs: list[dict[str, Any]] = []
    infos = [register(n, logs) for n in scripts]
    wait_until_final([i.pk for i in infos], cluster)
    events = [e for e in logs + cluster.events() if e["event"] == "lookup_status_changed"]
    for info in infos:
        attempts = Attempt.objects.filter(lookup=info).count()
        # created -> pending, then per attempt: -> scraping and -> retrying/final.
        assert len(transitions(events, info.pk)) == 1 + 2 * attempts


def test_busy_worker_names_its_lookup_in_its_process_title(qcluster: Any) -> None:
    """ps/top show which lookup and attempt a worker runs (setproctitle), never the cédula."""
    import time

    import psutil

    number = factories.cedula()
    cluster = qcluster({number: ["sleep:4"]})
    info = register(number)
    expected = f"census-lookup-{info.pk}-step-1"
    titles: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(expected in t for t in titles):
        for child in psutil.Process(cluster.process.pid).children(recursive=True):
            try:
                titles.append(" ".join(child.cmdline()))
            except psutil.Error:
                continue
        time.sleep(0.2)
    assert any(expected in t for t in titles), titles[-5:]
    assert not any(number in t for t in titles)
    wait_until_final([info.pk], cluster)


def test_tasks_and_schedules_queued_by_their_old_paths_still_run(qcluster: Any) -> None:
    """After the upgrade the broker and the schedule table still hold work queued by the
    old paths (``queue.OLD_TASK_FUNC`` with its hook ``queue.OLD_HOOK``): a real cluster
    runs both, claims them by their task id, and their hooks conclude them."""
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Schedule, Task
    from django_q.tasks import async_task, schedule

    from census.q2 import queue
    from tests.driving import clear_queue

    queued_number, scheduled_number = factories.cedula(), factories.cedula()
    queued, scheduled = register(queued_number), register(scheduled_number)
    clear_queue()  # lose the new-path tasks: only the old-path ones below can finish them
    options = {"hook": queue.OLD_HOOK, "ack_failure": True, "save": True, "timeout": 60}
    async_task(
        queue.OLD_TASK_FUNC,
        queued.pk,
        queued.step,
        q_options={**options, "task_name": queue.task_name(queued.pk, queued.step)},
    )
    schedule(
        queue.OLD_TASK_FUNC,
        scheduled.pk,
        scheduled.step,
        name=queue.task_name(scheduled.pk, scheduled.step),
        hook=queue.OLD_HOOK,
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + timedelta(seconds=1),
        q_options=options,
    )
    cluster = qcluster({queued_number: ["found"], scheduled_number: ["timeout", "found"]})
    infos = wait_until_final([queued.pk, scheduled.pk], cluster)
    assert [i.status for i in infos] == [Status.FOUND, Status.FOUND]
    # Each first attempt was claimed and run by the old-path task (not resumed by the
    # sweeper under the new path), which succeeded.
    first_tries = Attempt.objects.filter(lookup_id__in=[queued.pk, scheduled.pk], step=1)
    ran_by = {a.task_id: Task.objects.filter(id=a.task_id).first() for a in first_tries}
    assert len(ran_by) == 2 and all(
        t is not None and t.func == queue.OLD_TASK_FUNC and t.success for t in ran_by.values()
    ), ran_by
    assert [a.outcome for a in infos[1].attempts.order_by("step")] == ["timeout", "found"]
