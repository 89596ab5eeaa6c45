"""Keeping each lookup's promise in-process: deferrals, durable reports, recovery, bounds.

Django-Q2 is played by hand (tests/driving.py); tests/integration/test_faults.py does the same
things with real qcluster processes, Chromium and the simulator.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule, Task
from structlog.testing import capture_logs

from census.events import Event
from census.gate.rules import SEND_MARGIN
from census.lookup import attempt as attempt_task
from census.lookup import report
from census.maintenance import sweeper
from census.models import Attempt, CedulaInfo, RateGate, Status
from census.outcomes import Outcome
from census.q2 import hooks, queue
from census.scraper import LookupResult, Place
from census.testing import fake
from tests import factories
from tests.driving import clear_queue, drive, queued, run_and_hook

pytestmark = pytest.mark.django_db


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


# -- the breaker: deferred attempts spend nothing ---------------------------------------------


@pytest.fixture
def breaker(settings: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any) -> Any:
    """A 60 s block pause and a 5 s rate limit; ``breaker()`` has one lookup get blocked."""
    settings.CENSUS_BLOCK_BACKOFF_SECONDS = 60
    settings.CENSUS_RATE_LIMIT_SECONDS = 5

    def open_it() -> CedulaInfo:
        blocked = new_lookup("blocked", "found")
        with django_capture_on_commit_callbacks(execute=True):
            run_and_hook(blocked.pk, 1)
        return blocked

    return open_it


def first_attempt(info: CedulaInfo, capture: Any) -> CedulaInfo:
    with capture(execute=True):
        run_and_hook(info.pk, 1)
    info.refresh_from_db()
    return info


def test_a_block_defers_the_next_lookup_without_spending_its_attempt(
    breaker: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """After a block, another lookup sends nothing, keeps its budget, and waits for the gate."""
    breaker()
    opens = RateGate.objects.get().breaker_until
    assert opens is not None and opens > later(55)

    other = new_lookup("found")
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        run_and_hook(other.pk, 1)
    other.refresh_from_db()
    assert (other.status, other.retry_count, other.step) == (Status.RETRYING, 0, 2)
    assert other.next_attempt_at is not None and other.next_attempt_at >= opens
    row = Attempt.objects.get(lookup=other, step=1)
    assert (row.outcome, row.sent) == (Outcome.DEFERRED, False)
    assert fake._memory_counts.get(other.user.username) is None  # no step used: nothing sent
    deferred = [e for e in logs if e["event"] == Event.ATTEMPT_DEFERRED]
    assert len(deferred) == 1 and deferred[0]["reason"] == "breaker_open"
    assert Schedule.objects.filter(name=queue.task_name(other.pk, 2)).exists()


def test_deferred_lookups_keep_their_order_and_are_spread(
    breaker: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Lookups deferred one after another get due times one rate slot apart, in order."""
    breaker()
    infos = [first_attempt(new_lookup("found"), django_capture_on_commit_callbacks) for _ in "1234"]
    dues = [CedulaInfo.objects.get(pk=i.pk).next_attempt_at for i in infos]
    gaps = [(b - a).total_seconds() for a, b in zip(dues, dues[1:], strict=False)]
    # The places are on the gate's clock; due times on this host's: equal up to microseconds.
    assert gaps == pytest.approx([5.0 + SEND_MARGIN] * 3, abs=0.01)


def test_deferred_lookup_comes_back_as_the_probe_and_finishes(
    breaker: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Once the pause is over, the deferred attempt is the probe; its answer closes the gate."""
    breaker()
    other = first_attempt(new_lookup("found"), django_capture_on_commit_callbacks)
    RateGate.objects.update(breaker_until=timezone.now() - timedelta(seconds=1))
    CedulaInfo.objects.filter(pk=other.pk).update(next_attempt_at=timezone.now())
    RateGate.objects.update(defer_cursor=None, next_allowed_at=timezone.now())
    with capture_logs() as logs:
        other = drive(other, django_capture_on_commit_callbacks)
    assert other.status == Status.FOUND and other.retry_count == 0
    names = [e["event"] for e in logs]
    assert Event.BREAKER_PROBE in names and Event.BREAKER_CLOSED in names
    assert RateGate.objects.get().breaker_until is None


def test_deferred_past_the_maximum_ends_in_error_blocked(
    breaker: Any, settings: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A lookup that would wait past CENSUS_MAX_DEFER_SECONDS ends error/blocked, and says so."""
    settings.CENSUS_MAX_DEFER_SECONDS = 30
    breaker()
    other = first_attempt(new_lookup("found"), django_capture_on_commit_callbacks)
    assert (other.status, other.final_reason) == (Status.ERROR, "blocked")
    assert "deferred" in other.raw_response and "CENSUS_MAX_DEFER_SECONDS" in other.raw_response


def test_a_solving_service_that_cannot_serve_charges_no_attempt_and_ends_captcha_failed(
    settings: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A lookup deferred by the solving service (a zero balance) is not charged: it waits
    and comes back; deferred past CENSUS_MAX_DEFER_SECONDS it ends error/captcha_failed
    (the captcha was never passed), not blocked."""
    settings.CENSUS_MAX_DEFER_SECONDS = 90  # one 60 s wait fits, a second does not
    info = first_attempt(new_lookup("captcha_service"), django_capture_on_commit_callbacks)
    assert (info.status, info.retry_count) == (Status.RETRYING, 0)
    assert Attempt.objects.get(lookup=info).outcome == "deferred"
    CedulaInfo.objects.filter(pk=info.pk).update(next_attempt_at=timezone.now())
    info = drive(info, django_capture_on_commit_callbacks)
    assert (info.status, info.final_reason) == (Status.ERROR, "captcha_failed")
    assert not Attempt.objects.filter(lookup=info).exclude(outcome="deferred").exists()


# -- durable reports and task ownership --------------------------------------------------------


def test_the_report_lives_on_the_attempt_row(new_lookup: Any) -> None:
    """The task writes outcome, census data and sent flag to its Attempt row before returning."""
    info = new_lookup("found")
    attempt_task.current_task_id.set("t-own")
    attempt_task.run_attempt(info.pk, 1)
    row = Attempt.objects.get(lookup=info, step=1)
    assert (row.outcome, row.task_id, row.sent) == ("found", "t-own", True)
    assert row.answer["departamento"] == "BOGOTA D.C."


def test_a_hook_concludes_only_the_attempt_its_task_claimed(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A failed task that never claimed (database locked) cannot conclude another's attempt."""
    info = new_lookup("found")
    attempt_task.current_task_id.set("t-real")
    attempt_task.run_attempt(info.pk, 1)  # reported, hook not yet fired
    failed_before_claiming = Task(
        id="t-other", args=(info.pk, 1), success=False, result="database is locked : Traceback"
    )
    with capture_logs() as logs:
        hooks.attempt_finished(failed_before_claiming)
    info.refresh_from_db()
    assert info.status == Status.SCRAPING
    assert Attempt.objects.get(lookup=info, step=1).outcome == "found"
    assert logs[-1]["reason"] == "claimed by another task"
    with django_capture_on_commit_callbacks(execute=True):
        hooks.attempt_finished(Task(id="t-real", args=(info.pk, 1), success=True))
    info.refresh_from_db()
    assert info.status == Status.FOUND


def test_a_duplicate_whose_result_won_loses_no_answer(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Redelivery: the skipped copy's hook fires, the real one's never does; the sweeper ends it.

    Django-Q2 keeps the first successful result of a task id and drops the other copy's,
    hook included.
    """
    info = new_lookup("found")
    attempt_task.current_task_id.set("t-dup")
    attempt_task._claim(info.pk, 1, "t-dup")  # copy 1 claimed and is scraping...
    skipped = attempt_task.run_attempt(info.pk, 1)  # ...copy 2 (same id) arrives and skips
    assert skipped["skipped"] is True
    hooks.attempt_finished(Task(id="t-dup", args=(info.pk, 1), success=True, result=skipped))
    info.refresh_from_db()
    assert info.status == Status.SCRAPING
    # Copy 1 finishes: its report reaches the row; Django-Q2 drops its result and hook.
    result = LookupResult(outcome=Outcome.FOUND, place=Place(departamento="X"), meta={"sent": 1})
    report.write_report(info.pk, 1, "t-dup", result, info.user.username, 0.0)
    assert sweeper.sweep_reported() == 0  # a few seconds for the hook first
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeper.sweep_reported(later(sweeper.REPORT_GRACE_SECONDS + 1)) == 1
    info.refresh_from_db()
    assert (info.status, info.departamento) == (Status.FOUND, "X")


def test_a_task_killed_by_django_q2_timeout_is_concluded_from_its_failure(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A task stopped without a report: the hook records task_failed and retries."""
    info = new_lookup("found")
    attempt_task._claim(info.pk, 1, "t-timeout")
    task = Task(id="t-timeout", args=(info.pk, 1), success=False, result="TimeoutException")
    with django_capture_on_commit_callbacks(execute=True):
        hooks.attempt_finished(task)
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    row = Attempt.objects.get(lookup=info, step=1)
    assert (row.outcome, row.error) == ("task_failed", "TimeoutException")


# -- nothing stays unfinished -------------------------------------------------------------------


def test_pending_lookup_whose_task_vanished_is_resumed(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A queued task deleted (or lost with Redis): the sweeper queues the lookup again."""
    info = new_lookup("found")
    assert sweeper.sweep_stalled(later(3600)) == 0  # its task is queued: leave it
    clear_queue()
    assert sweeper.sweep_stalled() == 0  # within the grace period
    with capture_logs() as logs:
        assert sweeper.sweep_stalled(later(sweeper.stalled_after() + 1)) == 1
    assert [p["args"] for p in queued()] == [(info.pk, 1)]
    assert logs[0]["event"] == Event.LOOKUP_RESUMED and logs[0]["status"] == "pending"
    info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND


def test_enqueue_failing_at_commit_keeps_the_registration(
    scripted: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    """The broker refusing the first task: the member exists, the failure is logged, resumed."""

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("broker down")

    monkeypatch.setattr("census.q2.queue.async_task", refuse)
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        user = factories.member()
    info = CedulaInfo.objects.get(user=user)
    assert info.status == Status.PENDING
    failed = [e for e in logs if e["event"] == Event.ENQUEUE_FAILED]
    assert len(failed) == 1 and failed[0]["log_level"] == "error"
    monkeypatch.undo()
    assert sweeper.sweep_stalled(later(sweeper.stalled_after() + 1)) == 1
    assert [p["args"] for p in queued()] == [(info.pk, 1)]


def test_one_poisoned_lookup_does_not_stop_the_sweep(
    new_lookup: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A lookup whose recovery raises is logged with its traceback; the others are recovered."""
    first, second = new_lookup("found"), new_lookup("found")
    clear_queue()
    real = queue.queue_now

    def poisoned(lookup_id: int, attempt: int) -> bool:
        if lookup_id == first.pk:
            raise ValueError("poison")
        return real(lookup_id, attempt)

    monkeypatch.setattr("census.maintenance.sweeper.queue_now", poisoned)
    with capture_logs() as logs:
        assert sweeper.sweep_stalled(later(sweeper.stalled_after() + 1)) == 1
    assert [p["args"] for p in queued()] == [(second.pk, 1)]
    failed = [e for e in logs if e["event"] == Event.SWEEP_FAILED]
    assert [e["lookup_id"] for e in failed] == [first.pk] and failed[0]["exc_info"] is True


# -- bounds on everything from outside ------------------------------------------------------------


class PoisonScraper:
    """Answers with an infinite Retry-After or over-long census fields."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def lookup(self, cedula: str) -> LookupResult:
        if cedula.startswith("80"):
            return LookupResult(outcome=Outcome.BLOCKED, retry_after=math.inf)
        if cedula.startswith("81"):  # the gate: the site counts as changed for 300 s
            return LookupResult(
                outcome=Outcome.DEFERRED, detail="site_changed: x", retry_after=300.0
            )
        long = "x" * 10_000
        return LookupResult(
            outcome=Outcome.FOUND,
            place=Place(departamento=long, municipio=long, puesto=long, direccion=long, mesa=long),
            meta={"sent": True},
        )


@pytest.fixture
def poison(settings: Any) -> None:
    settings.CENSUS_SCRAPER = "tests.unit.test_reliability.PoisonScraper"


def test_infinite_retry_after_is_clamped(
    poison: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Retry-After: inf waits CENSUS_MAX_RETRY_AFTER_SECONDS; nothing overflows or sticks."""
    info = new_lookup(username=factories.cedula("80"))
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    assert Attempt.objects.get(lookup=info, step=1).retry_after == 3600.0
    wait = (info.next_attempt_at - info.last_retry_scheduled_at).total_seconds()
    assert wait == pytest.approx(3600.0)


def test_a_gate_deferral_waits_for_the_gate_not_the_retry_after_cap(
    poison: Any, settings: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A deferral until the gate opens (300 s) keeps its wait under a 5 s Retry-After cap.

    Capped like a site's header, it woke every 5 s to be refused again: a lookup deferred
    by the site-changed breaker looped until its deferral bound, a day later.
    """
    settings.CENSUS_MAX_RETRY_AFTER_SECONDS = 5
    info = new_lookup(username=factories.cedula("81"))
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    assert Attempt.objects.get(lookup=info, step=1).retry_after == 300.0
    wait = (info.next_attempt_at - timezone.now()).total_seconds()
    assert wait > 290, wait


def test_over_long_fields_are_cut_to_their_columns(
    poison: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A found answer with 10,000-character fields is stored cut to each column's length."""
    info = drive(new_lookup(), django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND
    for name in ("departamento", "municipio", "puesto", "direccion", "mesa"):
        limit = CedulaInfo._meta.get_field(name).max_length
        assert getattr(info, name) == "x" * limit


# -- failures as data -------------------------------------------------------------------------


class BuggyScraper:
    """A parser bug: a KeyError whose message is the cédula itself."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def lookup(self, cedula: str) -> LookupResult:
        return self._parse({"nuip": cedula}, cedula)

    @staticmethod
    def _parse(answer: dict[str, str], cedula: str) -> LookupResult:
        return LookupResult(outcome=Outcome(answer[cedula]))


def test_a_crash_keeps_its_traceback_once_in_the_log_and_on_the_attempt(
    settings: Any,
    new_lookup: Any,
    django_capture_on_commit_callbacks: Any,
    admin_client: Any,
) -> None:
    """An unexpected KeyError: logged once with its traceback, stored, shown; cédula masked."""
    import io
    import json

    import structlog
    from django.urls import reverse

    from census.logs import scrub_cedula

    settings.CENSUS_SCRAPER = "tests.unit.test_reliability.BuggyScraper"
    info = new_lookup()
    number = info.user.username
    out = io.StringIO()
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            scrub_cedula,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=out),
    )
    try:
        with django_capture_on_commit_callbacks(execute=True):
            task = run_and_hook(info.pk, 1)
    finally:
        structlog.configure(**previous)
    assert task.success is False and number not in task.result

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    crashed = [e for e in lines if e["event"] == "attempt_crashed"]
    assert len(crashed) == 1
    assert crashed[0]["error_class"] == "builtins.KeyError"
    assert "Traceback" in crashed[0]["exception"] and "_parse" in crashed[0]["exception"]
    assert number not in out.getvalue()

    row = Attempt.objects.get(lookup=info, step=1)
    assert (row.outcome, row.error_class) == ("task_failed", "builtins.KeyError")
    assert "in _parse" in row.traceback and "KeyError" in row.traceback
    assert number not in row.traceback and "*******" + number[-3:] in row.traceback
    info.refresh_from_db()
    assert info.status == Status.RETRYING  # a bug is retried like any task failure

    page = admin_client.get(reverse("admin:census_cedulainfo_change", args=[info.pk]))
    assert "in _parse" in page.content.decode()  # the attempt inline shows the traceback
