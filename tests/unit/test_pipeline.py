"""End to end in-process: registration -> task -> hook -> conclusion, with the fake scraper.

Django-Q2's part is played by hand here (the task is called, then the hook with a Task row);
tests/integration/test_cluster.py runs the same paths through a real qcluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule
from structlog.testing import capture_logs

from census.events import Event
from census.lookup.results import changed_fields, result_of
from census.models import CedulaInfo, PageSnapshot, RateGate, Status
from census.q2 import hooks, queue
from census.signals import lookup_finished
from tests.driving import drive, run_and_hook

pytestmark = pytest.mark.django_db


def test_found_at_once(new_lookup: Any, django_capture_on_commit_callbacks: Any) -> None:
    """A found answer finalises with the polling place and one attempt in the history."""
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND
    assert info.final_reason == "found"
    assert info.retry_count == 0
    assert info.puesto.startswith("PUESTO") and info.mesa
    assert list(info.attempts.values_list("step", "outcome")) == [(1, "found")]


def test_blocked_then_timeout_then_found(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Two retriable failures are retried on schedule; the third attempt finds the cédula."""
    info = new_lookup("blocked", "timeout", "found")
    with capture_logs() as logs:
        info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND
    assert info.retry_count == 2
    assert list(info.attempts.values_list("step", "outcome")) == [
        (1, "blocked"),
        (2, "timeout"),
        (3, "found"),
    ]
    retrying = [e for e in logs if e.get("to_status") == "retrying"]
    assert [(e["step"], e["delay_s"]) for e in retrying] == [(2, 2.0), (3, 3.0)]
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
    assert (info.step, info.retry_count) == (2, 1)
    [entry] = Schedule.objects.all()
    assert entry.schedule_type == Schedule.ONCE
    assert entry.name == f"census-lookup-{info.pk}-step-2"
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
        f"census-lookup-{info.pk}-step-2",
        f"census-lookup-{info.pk}-step-3",
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
    attempt = info.attempts.get(step=1)
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


def test_a_missing_cedula_names_the_setting(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """An empty cédula field ends in ERROR at once, reason missing_cedula, and the stored
    detail names CENSUS_CEDULA_FIELD and the field it reads."""
    settings.CENSUS_CEDULA_FIELD = "email"
    info = drive(new_lookup(), django_capture_on_commit_callbacks)
    assert (info.status, info.final_reason) == (Status.ERROR, "missing_cedula")
    assert "the user has no cédula (CENSUS_CEDULA_FIELD = 'email' is empty)" in info.raw_response


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
    assert (info.status, info.step, info.retry_count) == (Status.RETRYING, 2, 1)
    assert Schedule.objects.count() == 1
    assert [e["event"] for e in logs] == [Event.ATTEMPT_IGNORED]


# -- refresh ---------------------------------------------------------------------------------


# -- answers as the live site words them, through to the lookup ------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "reason", "novedad"),
    [
        ("found", Status.FOUND, "found", ""),
        ("not_found", Status.NOT_FOUND, "not_found", ""),
        ("cancelled_death", Status.CANCELLED, "cancelled", "Cancelada por Muerte"),
        (
            "cancelled_false_identity",
            Status.CANCELLED,
            "cancelled",
            "Cancelada por Falsa Identidad",
        ),
        (
            "cancelled_rights",
            Status.CANCELLED,
            "rights_suspended",
            "Cancelada por Pérdida o Suspensión de los Derechos Políticos",
        ),
        (
            "novedad_rights_valid",
            Status.CANCELLED,
            "rights_suspended",
            "Vigente con Pérdida o Suspensión de los Derechos Políticos",
        ),
        (
            "novedad_rights_removed",
            Status.CANCELLED,
            "rights_suspended",
            "Baja por Pérdida o Suspensión de los Derechos Políticos",
        ),
        (
            "novedad_not_enabled",
            Status.NOT_FOUND,
            "not_enabled",
            "no se encuentra habilitado para votar",
        ),
        (
            "novedad_pending",
            Status.NOT_FOUND,
            "pending_request",
            "Pendiente por Solicitud en proceso",
        ),
    ],
)
def test_each_worded_answer_ends_in_its_status_with_its_reason(
    new_lookup: Any,
    django_capture_on_commit_callbacks: Any,
    scenario: str,
    status: Status,
    reason: str,
    novedad: str,
) -> None:
    """The simulator's answer in each real wording, read by the real parser, ends the lookup
    at its first attempt in one of the design card's statuses, with its reason in
    final_reason, the lookup_finished signal and the final event, and the site's words kept."""
    heard: list[dict[str, Any]] = []

    def listen(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    lookup_finished.connect(listen, sender=CedulaInfo, weak=False)
    try:
        with capture_logs() as logs:
            info = drive(new_lookup(f"answer:{scenario}"), django_capture_on_commit_callbacks)
    finally:
        lookup_finished.disconnect(listen, sender=CedulaInfo)
    assert (info.status, info.final_reason, info.novedad) == (status, reason, novedad)
    assert info.retry_count == 0 and info.attempts.count() == 1
    assert [(k["status"], k["reason"]) for k in heard] == [(status, reason)]
    [final] = [e for e in logs if e.get("to_status") == status]
    assert final["reason"] == reason
    assert result_of(info)["final_reason"] == reason
    assert info.user.username not in info.novedad


@pytest.mark.parametrize("scenario", ["novedad_unknown", "not_found_reworded"])
def test_an_answer_in_unknown_words_is_unexpected_never_final(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, scenario: str
) -> None:
    """A novelty in words nobody knows, and a not-found message without its phrase, are
    answers in no known shape: retried, counted by the site-changed breaker and kept as a
    snapshot, never a final not_found or cancelled."""
    info = new_lookup(f"answer:{scenario}")
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, 1)
    info.refresh_from_db()
    assert info.status == Status.RETRYING
    attempt = info.attempts.get(step=1)
    assert (attempt.outcome, attempt.answer) == ("unexpected_page", {})
    assert RateGate.objects.get(name="census").unexpected_streak == 1
    [snapshot] = PageSnapshot.objects.all()
    check = "unknown_novedad" if scenario == "novedad_unknown" else "unknown_message"
    assert snapshot.signature.startswith(f"answer:{check}:")
    assert info.user.username not in snapshot.detail


def test_a_found_answer_keeps_its_coddivipol(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """coddivipol travels from the answer (any key case) to the lookup and its result; an
    answer without one leaves it empty."""
    capture = django_capture_on_commit_callbacks
    lower = drive(new_lookup("answer:found"), capture)
    upper = drive(new_lookup("answer:found_upper"), capture)
    without = drive(new_lookup("answer:found_without_coddivipol"), capture)
    for info in (lower, upper):
        assert info.status == Status.FOUND
        assert info.coddivipol.isdigit() and len(info.coddivipol) == 9
        assert info.user.username not in info.coddivipol
        assert result_of(info)["coddivipol"] == info.coddivipol
    assert (without.status, without.coddivipol) == (Status.FOUND, "")


def test_a_recheck_does_not_count_a_first_coddivipol_as_a_change() -> None:
    """A previous result kept before census had coddivipol says nothing about it; a code
    that differs from a kept one is a change."""
    current = {"status": "found", "puesto": "P", "coddivipol": "160010101"}
    assert changed_fields({"status": "found", "puesto": "P"}, current) == []
    assert changed_fields({**current, "coddivipol": ""}, current) == ["coddivipol"]
