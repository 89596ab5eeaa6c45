"""census.followups: a chain per final status, run in order, once, and resumed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule
from structlog.testing import capture_logs

from census import followups
from census.cedula import mask, scrub
from census.logs import ScrubCedulaFilter, scrub_cedula
from census.maintenance import sweeper
from census.models import CedulaInfo, FollowUp, Status
from census.q2 import queue
from census.q2.context import current_task_id
from tests.driving import clear_queue, drive, queued
from tests.follow_up_tasks import make_records_table, records

pytestmark = pytest.mark.django_db

State = FollowUp.State
PATHS = "tests.follow_up_tasks"


@pytest.fixture(autouse=True)
def _records_table() -> Iterator[None]:
    make_records_table()
    yield


def run_due(capture: Any, *, task_id: str = "ft") -> int:
    """Play Django-Q2 for follow-ups: run every queued one, in id order, until none is due
    (schedules are not waited for: a retry is run as soon as it is queued). Returns runs."""
    for runs in range(30):
        row = FollowUp.objects.filter(state=State.QUEUED).order_by("pk").first()
        if row is None:
            return runs
        current_task_id.set(f"{task_id}{runs}")
        with capture(execute=True), contextlib.suppress(followups.FollowUpFailed):
            followups.run_follow_up(row.pk)
    raise AssertionError("follow-ups never settled")


def finished(new_lookup: Any, capture: Any, *steps: str) -> CedulaInfo:
    return drive(new_lookup(*steps), capture)


def test_a_chain_runs_in_order_once_each(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """found -> its own links, then the "any" ones, each run once, in order, with its key."""
    settings.CENSUS_FOLLOW_UPS = {
        "found": [f"{PATHS}.record", f"{PATHS}.second"],
        "any": [f"{PATHS}.record"],
        "error": [f"{PATHS}.fail"],
    }
    capture = django_capture_on_commit_callbacks
    info = finished(new_lookup, capture, "found")
    chain = list(info.follow_ups.order_by("position"))
    assert [(f.position, f.name, f.state) for f in chain] == [
        (1, "record", State.QUEUED),
        (2, "second", State.WAITING),
        (3, "record", State.WAITING),
    ]
    names = [t["name"] for t in queued() if t["func"] == queue.FOLLOW_UP_FUNC]
    assert names == [f"census-followup-{info.pk}-1.1-record"]  # only the first is queued

    assert run_due(capture) == 3
    keys = [f"census-followup-{info.pk}-1-{n}" for n in (1, 2, 3)]
    assert records(lookup_id=info.pk) == [
        (info.pk, keys[0], "record"),
        (info.pk, keys[1], "second"),
        (info.pk, keys[2], "record"),
    ]
    assert set(info.follow_ups.values_list("state", flat=True)) == {State.SUCCEEDED}
    assert run_due(capture) == 0  # nothing runs twice


def test_no_chain_for_a_status_without_follow_ups(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """not_found with only "found" configured plans nothing, and retries plan nothing."""
    settings.CENSUS_FOLLOW_UPS = {"found": [f"{PATHS}.record"]}
    info = finished(new_lookup, django_capture_on_commit_callbacks, "timeout", "not_found")
    assert info.status == Status.NOT_FOUND
    assert not info.follow_ups.exists()


def test_a_failure_is_rolled_back_retried_then_stops_the_chain(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """A raising link leaves no row, is retried on its ladder, fails, and the next never
    runs; its stored error has the cédula masked."""
    settings.CENSUS_FOLLOW_UPS = {"any": [f"{PATHS}.fail", f"{PATHS}.record"]}
    settings.CENSUS_FOLLOW_UP_RETRY_DELAYS = [0, 0]
    capture = django_capture_on_commit_callbacks
    info = finished(new_lookup, capture, "found")
    with capture_logs() as logs:
        assert run_due(capture) == 3
    first, rest = info.follow_ups.order_by("position")
    assert (first.state, first.tries, rest.state) == (State.FAILED, 3, State.WAITING)
    assert records(lookup_id=info.pk) == []  # every run of "fail" was rolled back
    cedula = info.user.username
    assert "RuntimeError" in first.error and cedula not in first.error
    assert cedula[-3:] in first.error  # masked, not dropped
    failed = [e for e in logs if e["event"] == "follow_up_failed"]
    assert [e["will_retry"] for e in failed] == [True, True, False]
    assert [e["try"] for e in failed] == [1, 2, 3]
    # The retries were scheduled as ONCE schedules named by their try.
    names = set(Schedule.objects.values_list("name", flat=True))
    assert {f"census-followup-{info.pk}-1.1-fail-try-{n}" for n in (2, 3)} <= names


def test_what_a_failing_follow_up_logs_has_the_cedula_masked(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any, caplog: Any
) -> None:
    """A follow-up that logs the member's cédula and raises with it: ``follow_up_failed``'s
    traceback and the portal's own log line, both scrubbed, show only its mask."""
    settings.CENSUS_FOLLOW_UPS = {"any": [f"{PATHS}.crm_rejects"]}
    settings.CENSUS_FOLLOW_UP_RETRY_DELAYS = []
    capture = django_capture_on_commit_callbacks
    info = finished(new_lookup, capture, "found")
    cedula = info.user.username
    caplog.handler.addFilter(ScrubCedulaFilter())
    with capture_logs(processors=[scrub_cedula]) as logs, caplog.at_level("WARNING"):
        assert run_due(capture) == 1
    [failed] = [e for e in logs if e["event"] == "follow_up_failed"]
    assert f"CRM rejected member {mask(cedula)}" in failed["exception"]
    assert scrub(failed["exception"], cedula) == failed["exception"]  # no echo left
    [line] = [r for r in caplog.records if r.name == "portal.crm"]
    assert line.getMessage() == f"CRM refused {mask(cedula)}"


def test_running_a_failed_link_again_resumes_the_chain(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """After the cause is fixed, ``run_again`` gives the failed link a fresh ladder and the
    rest of the chain follows."""
    settings.CENSUS_FOLLOW_UPS = {"any": [f"{PATHS}.fail", f"{PATHS}.second"]}
    settings.CENSUS_FOLLOW_UP_RETRY_DELAYS = []
    capture = django_capture_on_commit_callbacks
    info = finished(new_lookup, capture, "found")
    run_due(capture)
    first = info.follow_ups.get(position=1)
    assert first.state == State.FAILED
    FollowUp.objects.filter(pk=first.pk).update(path=f"{PATHS}.record")  # the portal's fix
    with capture(execute=True):
        assert followups.run_again(first.pk)
    assert not followups.run_again(first.pk)  # not failed any more: nothing to do
    run_due(capture)
    assert [r[2] for r in records(lookup_id=info.pk)] == ["record", "second"]


def test_a_second_delivery_runs_nothing(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """The same task delivered twice (a broker redelivery) runs the follow-up once."""
    settings.CENSUS_FOLLOW_UPS = {"found": [f"{PATHS}.record"]}
    capture = django_capture_on_commit_callbacks
    info = finished(new_lookup, capture, "found")
    row = info.follow_ups.get()
    current_task_id.set("same")
    with capture(execute=True):
        assert followups.run_follow_up(row.pk)["succeeded"]
        assert followups.run_follow_up(row.pk)["skipped"]
    assert len(records(lookup_id=info.pk)) == 1


def test_the_sweeper_resumes_lost_runs_and_lost_tasks(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """A run whose worker died (RUNNING past the timeout) and a queued link whose task is
    gone are queued again; a live, recent run is left alone."""
    settings.CENSUS_FOLLOW_UPS = {"found": [f"{PATHS}.record"]}
    capture = django_capture_on_commit_callbacks
    lost_run = finished(new_lookup, capture, "found").follow_ups.get()
    lost_task = finished(new_lookup, capture, "found").follow_ups.get()
    recent = finished(new_lookup, capture, "found").follow_ups.get()
    clear_queue()
    long_ago = timezone.now() - timedelta(hours=1)
    FollowUp.objects.filter(pk=lost_run.pk).update(
        state=State.RUNNING, tries=1, task_id="dead", started_at=long_ago
    )
    FollowUp.objects.filter(pk=lost_task.pk).update(due_at=long_ago)
    FollowUp.objects.filter(pk=recent.pk).update(
        state=State.RUNNING, tries=1, task_id="alive", started_at=timezone.now()
    )
    with capture(execute=True):
        assert sweeper.sweep_follow_ups() == 2
    assert FollowUp.objects.get(pk=lost_run.pk).state == State.QUEUED
    assert FollowUp.objects.get(pk=recent.pk).state == State.RUNNING
    names = {t["name"] for t in queued() if t["func"] == queue.FOLLOW_UP_FUNC}
    assert f"census-followup-{lost_run.lookup_id}-1.1-record-try-2" in names
    assert f"census-followup-{lost_task.lookup_id}-1.1-record" in names
    run_due(capture)
    for row in (lost_run, lost_task):
        assert len(records(lookup_id=row.lookup_id)) == 1


def test_a_failed_enqueue_at_commit_is_resumed(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any, monkeypatch: Any
) -> None:
    """The broker refuses the first link's task: the row stays queued, and the sweeper
    queues it once it is overdue."""
    settings.CENSUS_FOLLOW_UPS = {"found": [f"{PATHS}.record"]}

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "enqueue_follow_up", refuse)
    with capture_logs() as logs:
        info = finished(new_lookup, django_capture_on_commit_callbacks, "found")
    assert any(e["event"] == "enqueue_failed" for e in logs)
    row = info.follow_ups.get()
    assert row.state == State.QUEUED
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        later = timezone.now() + timedelta(seconds=sweeper.stalled_after() + 1)
        assert sweeper.sweep_follow_ups(later) == 1
    run_due(django_capture_on_commit_callbacks)
    assert len(records(lookup_id=info.pk)) == 1


def test_a_refresh_that_ends_again_runs_a_new_chain_with_new_keys(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """Each final status reached plans its own chain: the keys differ."""
    from census.lookup import refresh

    settings.CENSUS_FOLLOW_UPS = {"any": [f"{PATHS}.record"]}
    capture = django_capture_on_commit_callbacks
    info = finished(new_lookup, capture, "found", "found")
    run_due(capture)
    with capture(execute=True):
        assert refresh.restart(info.pk, requester_id=None)
    info = drive(CedulaInfo.objects.get(pk=info.pk), capture)
    run_due(capture)
    keys = [r[1] for r in records(lookup_id=info.pk)]
    assert keys == [f"census-followup-{info.pk}-1-1", f"census-followup-{info.pk}-2-1"]
