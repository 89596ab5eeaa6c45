"""``census.observability.stats`` and the ``census_stats`` command on a known set of lookups."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Task

from census.models import Attempt, CedulaInfo, Status
from census.observability.stats import Distribution, compute, percentile
from tests import factories

T0 = datetime(2026, 3, 1, 12, 0, 0).astimezone()


def _lookup(status: Status, *, finished_after: float | None = None, reason: str = "") -> int:
    info = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=info.pk).update(
        status=status.value,
        created_at=T0,
        finished_at=T0 + timedelta(seconds=finished_after) if finished_after else None,
        final_reason=reason,
    )
    return info.pk


def _attempt(
    lookup_id: int,
    number: int,
    outcome: str,
    *,
    due: float,
    late: float,
    queued: float | None = None,
) -> None:
    """An attempt due ``due`` s after T0, started ``late`` s after that; its Django-Q2 task
    (if ``queued`` is given) was queued ``queued`` s after the due time."""
    task_id = ""
    if queued is not None:
        task_id = f"task-{lookup_id}-{number}"
        queued_at = T0 + timedelta(seconds=due + queued)
        Task.objects.create(
            id=task_id, name=task_id, func="f", started=queued_at, stopped=queued_at, success=True
        )
    Attempt.objects.create(
        lookup_id=lookup_id,
        step=number,
        outcome=outcome,
        # The pipeline gives only scheduled retries a due time.
        due_at=T0 + timedelta(seconds=due) if number > 1 else None,
        started_at=T0 + timedelta(seconds=due + late),
        task_id=task_id,
    )


@pytest.fixture
def known_lookups(db: Any) -> None:
    """Six lookups: found at once, found on the 3rd attempt, exhausted, not found, two open."""
    found = _lookup(Status.FOUND, finished_after=10, reason="found")
    _attempt(found, 1, "found", due=0, late=1.5)  # a first attempt: queueing, not lateness

    retried = _lookup(Status.FOUND, finished_after=100, reason="found")
    _attempt(retried, 1, "blocked", due=0, late=0.1)
    _attempt(retried, 2, "timeout", due=5, late=0.5, queued=0.3)
    _attempt(retried, 3, "found", due=60, late=3.0, queued=0.9)

    exhausted = _lookup(Status.ERROR, finished_after=30, reason="captcha_failed")
    _attempt(exhausted, 1, "captcha_failed", due=0, late=0.0)
    _attempt(exhausted, 2, "captcha_failed", due=5, late=0.2, queued=0.1)
    _attempt(exhausted, 3, "captcha_failed", due=15, late=0.4)

    not_found = _lookup(Status.NOT_FOUND, finished_after=20, reason="not_found")
    _attempt(not_found, 1, "not_found", due=0, late=0.3)

    _lookup(Status.PENDING)
    running = _lookup(Status.SCRAPING)
    _attempt(running, 1, "", due=0, late=0.1)


def test_percentile_interpolates_between_ranks() -> None:
    """Median of an even count is the mean of the middle two; p95 interpolates."""
    assert percentile([10, 20, 30, 100], 50) == 25
    assert percentile([10, 20, 30, 100], 95) == pytest.approx(89.5)
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None


def test_distribution_of_nothing_is_empty() -> None:
    """No values: a count of 0 and no figures rather than an error."""
    assert Distribution.of([]) == Distribution(count=0, median=None, p95=None, max=None)


def test_compute_on_known_lookups(known_lookups: None) -> None:
    """Counts, outcomes per attempt, reasons, lateness and time to final match the data."""
    stats = compute()

    assert stats.lookups == 6
    assert stats.by_status == {
        "pending": 1,
        "scraping": 1,
        "retrying": 0,
        "found": 2,
        "not_found": 1,
        "cancelled": 0,
        "error": 1,
    }
    assert stats.outcomes_by_step == {
        1: {"found": 1, "blocked": 1, "captcha_failed": 1, "not_found": 1, "running": 1},
        2: {"timeout": 1, "captcha_failed": 1},
        3: {"found": 1, "captcha_failed": 1},
    }
    assert stats.error_reasons == {"captcha_failed": 1}
    assert stats.attempts_used == {0: 1, 1: 3, 3: 2}
    assert stats.retry_lateness == Distribution(
        count=4, median=pytest.approx(0.45), p95=pytest.approx(2.625), max=3.0
    )
    assert stats.late_retries == 1
    assert stats.retry_queue_lateness == Distribution(
        count=3, median=pytest.approx(0.3), p95=pytest.approx(0.84), max=pytest.approx(0.9)
    )
    assert stats.time_to_final == Distribution(
        count=4, median=25.0, p95=pytest.approx(89.5), max=100.0
    )


def test_compute_on_a_subset(known_lookups: None) -> None:
    """A queryset limits the statistics to those lookups and their attempts."""
    stats = compute(CedulaInfo.objects.filter(status=Status.ERROR))

    assert stats.lookups == 1
    assert stats.outcomes_by_step == {n: {"captcha_failed": 1} for n in (1, 2, 3)}


def test_command_prints_a_table(known_lookups: None) -> None:
    """The default output is a readable table with every section."""
    out = StringIO()
    call_command("census_stats", stdout=out)
    lines = out.getvalue().splitlines()

    assert lines[0] == "Census lookups: 6"
    assert "found            2" in lines
    assert "Step  blocked  captcha_failed  found  not_found  running  timeout  total" in lines
    assert "1           1               1      1          1        1        0      5" in lines
    assert "captcha_failed        1" in lines
    assert "retries 4   median 0.45 s   p95 2.62 s   max 3.00 s   late (> 2 s) 1" in lines, lines
    assert "retries 3   median 0.30 s   p95 0.84 s   max 0.90 s" in lines
    assert "lookups 4   median 25.0 s   p95 89.5 s   max 100.0 s" in lines


def test_command_prints_json(known_lookups: None) -> None:
    """``--json`` prints the same figures as JSON."""
    out = StringIO()
    call_command("census_stats", "--json", stdout=out)
    data = json.loads(out.getvalue())

    assert data["lookups"] == 6
    assert data["by_status"]["error"] == 1
    assert data["outcomes_by_step"]["3"] == {"found": 1, "captcha_failed": 1}
    assert data["error_reasons"] == {"captcha_failed": 1}
    assert data["attempts_used"] == {"0": 1, "1": 3, "3": 2}
    assert data["late_retries"] == 1
    assert data["time_to_final"]["median"] == 25.0
    assert data["retry_lateness"]["count"] == 4
    assert data["retry_queue_lateness"]["count"] == 3


def test_late_after_moves_the_threshold(known_lookups: None) -> None:
    """``--late-after 5`` no longer counts the retry that started 3 s late."""
    out = StringIO()
    call_command("census_stats", "--json", "--late-after", "5", stdout=out)

    assert json.loads(out.getvalue())["late_retries"] == 0


@pytest.mark.django_db
def test_breaker_state_and_the_lookups_waiting_on_it() -> None:
    """census_stats says whether the breaker is open, until when, and who waits on it."""
    from django.utils import timezone

    from census.models import RateGate
    from census.observability.stats import breaker_state

    assert breaker_state().state == "closed"
    now = timezone.now()
    RateGate.objects.create(
        name="census",
        next_allowed_at=now,
        breaker_until=now + timedelta(seconds=60),
        consecutive_blocks=2,
    )
    info = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=info.pk).update(status=Status.RETRYING, step=2)
    Attempt.objects.create(lookup=info, step=1, outcome="deferred")
    state = breaker_state(now)
    assert (state.state, state.consecutive_blocks, state.waiting) == ("open", 2, 1)
    assert compute().attempts_used == {0: 1}  # a deferral sent nothing: no attempt used
    assert breaker_state(now + timedelta(seconds=61)).state == "half_open"
    out = StringIO()
    call_command("census_stats", stdout=out)
    assert "state open until" in out.getvalue()
    assert "lookups waiting on it 1" in out.getvalue()


@pytest.mark.django_db
def test_the_site_changed_state_and_the_unexpected_pages() -> None:
    """census_stats (table and JSON) says since when the site counts as changed, with which
    signature, and lists each kept signature with its count."""
    from django.utils import timezone

    from census.models import PageSnapshot, RateGate

    now = timezone.now()
    RateGate.objects.create(
        name="census",
        next_allowed_at=now,
        breaker_until=now + timedelta(seconds=300),
        unexpected_streak=5,
        site_changed_at=now,
        site_signature="answer:missing_field:encontrado",
    )
    PageSnapshot.objects.create(signature="answer:missing_field:encontrado", count=7)
    out = StringIO()
    call_command("census_stats", stdout=out)
    text = out.getvalue()
    assert "SITE CHANGED since" in text and "answer:missing_field:encontrado" in text
    assert "unexpected answers in a row 5" in text
    row = next(line for line in text.splitlines() if line.startswith("answer:missing_field"))
    assert row.split()[1] == "7"
    out = StringIO()
    call_command("census_stats", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["breaker"]["site_signature"] == "answer:missing_field:encontrado"
    assert data["unexpected_pages"][0]["count"] == 7


# -- captcha solves (census.captcha.pool's ledger and the solving service's row) -------------

CAPTCHA = {"service": "2captcha", "api_key": "census-test-key"}
#: The keys census_stats --json printed before the captcha section: none changes.
KEYS_BEFORE_CAPTCHA = {
    "lookups",
    "by_status",
    "outcomes_by_step",
    "error_reasons",
    "attempts_used",
    "retry_lateness",
    "retry_queue_lateness",
    "late_after",
    "late_retries",
    "time_to_final",
    "breaker",
    "paused",
    "unexpected_pages",
}


@pytest.mark.django_db
def test_captcha_solves_today_and_overall(settings: Any) -> None:
    """The ledger of solves since the server's local midnight and over all of them, paid
    solves per lookup, what the daily limit leaves, and the paused service's state."""
    from census.observability.stats import captcha_stats

    settings.CENSUS_CAPTCHA = CAPTCHA
    settings.CENSUS_CAPTCHA_DAILY_LIMIT = 10
    factories.captcha_solves()
    stats = captcha_stats()

    assert stats is not None
    assert (stats.service, stats.pool) == ("2captcha", True)
    assert stats.today == {
        "asked": 7,
        "paid": 5,
        "used": 2,
        "refused": 1,
        "wasted": 1,
        "failed": 1,
        "solving": 1,
        "ready": 1,
        "held": 1,
    }
    assert stats.overall == {
        "asked": 10,
        "paid": 7,
        "used": 3,
        "refused": 1,
        "wasted": 2,
        "failed": 2,
        "solving": 1,
        "ready": 1,
        "held": 1,
    }
    assert stats.paid_per_lookup_today == 1.667  # 5 paid for lookups B, C, D
    assert stats.paid_per_lookup == 1.75
    # The limit counts the solves asked today but the one never delivered: 6 of 10.
    assert (stats.daily_limit, stats.daily_left) == (10, 4)
    service = stats.solving_service
    assert (service.state, service.reason, service.failed_probes) == ("paused", "zero_balance", 2)
    assert service.since is not None and service.until is not None and service.site_key_known


@pytest.mark.django_db
def test_census_stats_prints_the_captcha_section(settings: Any) -> None:
    """The table shows the service's pause with its reason, the solves today and overall,
    per lookup and the day's limit; --json adds ``captcha`` and keeps every other key; no
    token appears."""
    settings.CENSUS_CAPTCHA = CAPTCHA
    settings.CENSUS_CAPTCHA_DAILY_LIMIT = 10
    factories.captcha_solves()
    out = StringIO()
    call_command("census_stats", stdout=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert "Captcha solves (the solving service and the token pool)" in lines
    assert "service 2captcha   pool on   site key known" in lines
    state = next(line for line in lines if line.startswith("state PAUSED since"))
    assert "zero_balance" in state and "failed probes 2" in state
    assert [line.split() for line in lines if line.startswith(("asked ", "being solved"))] == [
        ["asked", "7", "10"],
        ["being", "solved", "1", "1"],
    ]
    assert "paid solves per lookup   today 1.67   overall 1.75" in lines
    assert "daily limit (CENSUS_CAPTCHA_DAILY_LIMIT) 10   left today 4" in lines
    assert "03A-" not in text

    out = StringIO()
    call_command("census_stats", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == KEYS_BEFORE_CAPTCHA | {"captcha", "work_classes"}
    captcha = data["captcha"]
    assert captcha["today"]["paid"] == 5 and captcha["overall"]["wasted"] == 2
    assert captcha["solving_service"]["state"] == "paused"
    assert captcha["solving_service"]["reason"] == "zero_balance"
    assert captcha["solving_service"]["failed_probes"] == 2
    assert captcha["daily_left"] == 4 and captcha["paid_per_lookup"] == 1.75
    assert "03A-" not in out.getvalue()


@pytest.mark.django_db
def test_no_solving_service_and_no_solves(settings: Any) -> None:
    """Without CENSUS_CAPTCHA and without a solve, census_stats says so in one line and
    --json has ``captcha: null``; a configured service with no row yet is ok, no site key."""
    from census.observability.stats import captcha_stats

    settings.CENSUS_CAPTCHA = None
    out = StringIO()
    call_command("census_stats", stdout=out)
    assert out.getvalue().splitlines()[-1] == (
        "Captcha solves: no solving service configured (CENSUS_CAPTCHA)"
    )
    out = StringIO()
    call_command("census_stats", "--json", stdout=out)
    assert json.loads(out.getvalue())["captcha"] is None

    settings.CENSUS_CAPTCHA = CAPTCHA
    stats = captcha_stats()
    assert stats is not None and stats.overall["asked"] == 0 and stats.daily_left is None
    service = stats.solving_service
    assert (service.state, service.site_key_known, service.until) == ("ok", False, None)


# -- work classes (census.lookup.capacity.queues) ---------------------------------------------


def _class_lookup(work_class: str, status: Status, *, due_in: float | None = None) -> CedulaInfo:
    info = CedulaInfo.objects.get(user=factories.member())
    due = timezone.now() + timedelta(seconds=due_in) if due_in is not None else None
    CedulaInfo.objects.filter(pk=info.pk).update(
        work_class=work_class, status=status.value, next_attempt_at=due
    )
    return CedulaInfo.objects.get(pk=info.pk)


def _sent(info: CedulaInfo, step: int, *, minutes_ago: float, sent: bool = True) -> None:
    Attempt.objects.create(
        lookup=info,
        step=step,
        outcome="found" if sent else "deferred",
        sent=sent,
        work_class=info.work_class,
        started_at=timezone.now() - timedelta(minutes=minutes_ago),
        sent_at=timezone.now() - timedelta(minutes=minutes_ago) if sent else None,
    )


@pytest.fixture
def classes(db: Any, settings: Any) -> None:
    """Two registrations waiting (one running), a refresh due in 10 s and one due in an hour,
    a finished bulk lookup, three unverified ones pending; consultas sent in the last hour:
    3 for refreshes, 1 for bulk (and one two hours ago, one deferral that sent nothing)."""
    settings.CENSUS_CAPACITY_SHARES = {"refresh": 0.25, "bulk": 0.1}
    _class_lookup("registration", Status.PENDING)
    _class_lookup("registration", Status.SCRAPING)
    refresh = _class_lookup("refresh", Status.RETRYING, due_in=10)
    later = _class_lookup("refresh", Status.RETRYING, due_in=3600)
    bulk = _class_lookup("bulk", Status.FOUND)
    for _ in range(3):
        _class_lookup("unverified", Status.PENDING)
    _sent(refresh, 1, minutes_ago=50)
    _sent(refresh, 2, minutes_ago=5)
    _sent(later, 1, minutes_ago=1)
    _sent(later, 2, minutes_ago=0.5, sent=False)  # deferred for its share: nothing sent
    _sent(bulk, 1, minutes_ago=120)  # before the hour
    _sent(bulk, 2, minutes_ago=30)


def test_census_stats_shows_each_work_classs_queue_and_share(classes: None) -> None:
    """Per work class: the lookups waiting (queued, running or due within 30 s), the
    consultas sent in the last hour, and the share: registrations first, refresh and bulk
    their CENSUS_CAPACITY_SHARES as a percentage, unverified spare capacity only; --json
    has the same under ``work_classes``, the share as a fraction (null: first)."""
    out = StringIO()
    call_command("census_stats", stdout=out)
    lines = out.getvalue().splitlines()
    start = lines.index(
        "Work classes (the site's capacity shared while registrations wait: docs/capacity.md)"
    )
    assert lines[start + 1 : start + 6] == [
        "Class         Waiting  Sent last hour       Share",
        "registration        2               0       first",
        "refresh             1               3         25%",
        "bulk                0               1         10%",
        "unverified          3               0  spare only",
    ]

    out = StringIO()
    call_command("census_stats", "--json", stdout=out)
    assert json.loads(out.getvalue())["work_classes"] == {
        "registration": {"waiting": 2, "sent_last_hour": 0, "share": None},
        "refresh": {"waiting": 1, "sent_last_hour": 3, "share": 0.25},
        "bulk": {"waiting": 0, "sent_last_hour": 1, "share": 0.1},
        "unverified": {"waiting": 3, "sent_last_hour": 0, "share": 0.0},
    }
