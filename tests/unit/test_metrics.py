"""census.observability.metrics: Prometheus text from the database, for a token or a
permitted user."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from census.models import Attempt, CedulaInfo, FollowUp, Status
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/metrics/census"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, parsed by Prometheus's own parser: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def lookups() -> list[CedulaInfo]:
    """Three lookups: found after a timeout and a late retry, one deferred, one pending."""
    now = timezone.now()
    found, deferred, pending = (CedulaInfo.objects.get(user=factories.member()) for _ in range(3))
    CedulaInfo.objects.filter(pk=found.pk).update(status=Status.FOUND, step=2)
    Attempt.objects.create(lookup=found, step=1, outcome="timeout", duration_ms=3000)
    Attempt.objects.create(
        lookup=found,
        step=2,
        outcome="found",
        duration_ms=12500,
        due_at=now - timedelta(seconds=4),
        started_at=now - timedelta(seconds=1),  # 3 s late
        sent_at=now,
    )
    CedulaInfo.objects.filter(pk=deferred.pk).update(status=Status.RETRYING, step=2)
    Attempt.objects.create(lookup=deferred, step=1, outcome="deferred")
    FollowUp.objects.create(
        lookup=found, step=2, position=1, status="found", path="a.b", state="succeeded"
    )
    return [found, deferred, pending]


def test_the_figures_match_the_database(client: Any, settings: Any) -> None:
    """Gauges, counters and histograms say what the tables hold, in valid Prometheus text."""
    settings.CENSUS_METRICS_TOKEN = "s3cret"
    found, deferred, pending = lookups()
    response = client.get(URL, headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(response.content.decode())
    assert got[("census_lookups", (("status", "found"),))] == 1
    assert got[("census_lookups", (("status", "retrying"),))] == 1
    assert got[("census_lookups", (("status", "pending"),))] == 1
    assert got[("census_lookups", (("status", "error"),))] == 0
    assert got[("census_attempts_total", (("outcome", "timeout"),))] == 1
    assert got[("census_attempts_total", (("outcome", "deferred"),))] == 1
    assert got[("census_attempt_duration_seconds_count", ())] == 2  # deferred: no duration
    assert got[("census_attempt_duration_seconds_bucket", (("le", "5.0"),))] == 1
    assert got[("census_attempt_duration_seconds_bucket", (("le", "20.0"),))] == 2
    assert got[("census_attempt_duration_seconds_sum", ())] == pytest.approx(15.5)
    assert got[("census_retry_lateness_seconds_bucket", (("le", "2.0"),))] == 0
    assert got[("census_retry_lateness_seconds_bucket", (("le", "5.0"),))] == 1
    assert got[("census_retry_lateness_seconds_sum", ())] == pytest.approx(3.0)
    assert got[("census_attempt_send_delay_seconds_sum", ())] == pytest.approx(1.0)
    assert got[("census_breaker_phase", (("phase", "closed"),))] == 1
    assert got[("census_breaker_phase", (("phase", "open"),))] == 0
    assert got[("census_deferred_lookups", ())] == 1
    assert got[("census_follow_ups", (("state", "succeeded"),))] == 1
    text = response.content.decode()
    for info in (found, deferred, pending):  # no cédula, no user id as a label
        assert info.user.username not in text
        assert f'="{info.user_id}"' not in text


def test_only_the_token_or_a_permitted_user_reads_them(client: Any, settings: Any) -> None:
    """A wrong token, no token and a member are refused; staff who view lookups are not."""
    settings.CENSUS_METRICS_TOKEN = "s3cret"
    assert client.get(URL, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get(URL).status_code == 403
    member = factories.member()
    client.force_login(member)
    assert client.get(URL).status_code == 403
    member.user_permissions.add(Permission.objects.get(codename="view_cedulainfo"))
    client.force_login(type(member).objects.get(pk=member.pk))
    assert client.get(URL).status_code == 200


def test_the_grafana_dashboard_charts_only_metrics_census_serves(
    client: Any, settings: Any
) -> None:
    """Every metric a panel of docs/grafana-census.json queries is one the view serves."""
    import json
    import re

    from tests.clusters import ROOT

    settings.CENSUS_METRICS_TOKEN = "t"
    served = {
        name
        for name, _ in samples(
            client.get(URL, headers={"Authorization": "Bearer t"}).content.decode()
        )
    }
    dashboard = json.loads((ROOT / "docs" / "grafana-census.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bcensus_[a-z_]+", target["expr"])
    }
    assert queried and queried <= served, queried - served


def test_the_site_changed_gauges_follow_the_gate_row(client: Any, settings: Any) -> None:
    """census_site_changed is 1 while the gate row says so, with the streak and the kept
    signatures beside it; 0 once it is over."""
    from census.models import PageSnapshot, RateGate

    settings.CENSUS_METRICS_TOKEN = "s3cret"
    now = timezone.now()
    row = RateGate.objects.create(
        name="census",
        next_allowed_at=now,
        breaker_until=now + timedelta(seconds=300),
        unexpected_streak=4,
        site_changed_at=now,
        site_signature="consulta:not_json",
    )
    PageSnapshot.objects.create(signature="consulta:not_json", count=4)
    PageSnapshot.objects.create(signature="page:missing_element:documento", count=2)
    auth = {"Authorization": "Bearer s3cret"}
    got = samples(client.get(URL, headers=auth).content.decode())
    assert got[("census_site_changed", ())] == 1
    assert got[("census_unexpected_streak", ())] == 4
    assert got[("census_unexpected_signatures", ())] == 2
    assert got[("census_unexpected_pages_total", ())] == 6
    assert got[("census_breaker_phase", (("phase", "open"),))] == 1
    RateGate.objects.filter(pk=row.pk).update(
        site_changed_at=None, breaker_until=None, unexpected_streak=0
    )
    got = samples(client.get(URL, headers=auth).content.decode())
    assert got[("census_site_changed", ())] == 0


def test_the_captcha_solves_and_the_solving_services_pause(client: Any, settings: Any) -> None:
    """census_captcha_solves_total counts solves by result, census_captcha_tokens those in
    flight, census_captcha_service_paused is 1 with the reason while the service is paused
    (0, no reason, once resumed), and census_captcha_daily_left follows the day's limit."""
    from census.models import CaptchaService

    settings.CENSUS_METRICS_TOKEN = "s3cret"
    settings.CENSUS_CAPTCHA_DAILY_LIMIT = 10
    factories.captcha_solves()
    auth = {"Authorization": "Bearer s3cret"}
    text = client.get(URL, headers=auth).content.decode()
    got = samples(text)
    solves = {
        result: got[("census_captcha_solves_total", (("result", result),))]
        for result in ("asked", "paid", "used", "refused", "wasted", "failed")
    }
    assert solves == {"asked": 10, "paid": 7, "used": 3, "refused": 1, "wasted": 2, "failed": 2}
    tokens = {
        s: got[("census_captcha_tokens", (("state", s),))] for s in ("solving", "ready", "held")
    }
    assert tokens == {"solving": 1, "ready": 1, "held": 1}
    assert got[("census_captcha_service_paused", (("reason", "zero_balance"),))] == 1
    assert got[("census_captcha_service_failed_probes", ())] == 2
    assert got[("census_captcha_daily_left", ())] == 4  # 6 asked today and delivered or not yet
    assert "03A-" not in text

    CaptchaService.objects.update(open_until=None, opened_at=None, reason="", failures=0)
    settings.CENSUS_CAPTCHA_DAILY_LIMIT = None
    got = samples(client.get(URL, headers=auth).content.decode())
    assert got[("census_captcha_service_paused", ())] == 0
    assert not [key for key in got if key[0] == "census_captcha_service_paused" and key[1]]
    assert got[("census_captcha_service_failed_probes", ())] == 0
    assert not [key for key in got if key[0] == "census_captcha_daily_left"]


def test_every_metric_served_is_in_the_docs_table(client: Any, settings: Any) -> None:
    """docs/observability.md's metrics table lists every family the view serves, and no
    other (a limit set, so the daily-limit gauge is served too)."""
    import re

    from tests.clusters import ROOT

    settings.CENSUS_METRICS_TOKEN = "t"
    settings.CENSUS_CAPTCHA_DAILY_LIMIT = 5
    text = client.get(URL, headers={"Authorization": "Bearer t"}).content.decode()
    served = set(re.findall(r"^# TYPE (census_[a-z_]+) ", text, flags=re.MULTILINE))
    docs = (ROOT / "docs" / "observability.md").read_text()
    table = docs.split("## Prometheus metrics", 1)[1]
    documented = set(re.findall(r"^\| `(census_[a-z_]+)` \|", table, flags=re.MULTILINE))
    assert served and documented == served, (served - documented, documented - served)


def test_each_work_classs_queue_share_and_consultas_sent(client: Any, settings: Any) -> None:
    """census_lookups_waiting counts each class's waiting lookups (queued, running, due
    within 30 s), census_capacity_share is CENSUS_CAPACITY_SHARES for refresh and bulk, and
    census_consultas_sent_total counts every attempt that sent its consulta, by the class it
    was claimed under (a deferral sent nothing; an attempt from before the classes counts
    under none); every class has its series, zeros too."""
    settings.CENSUS_METRICS_TOKEN = "s3cret"
    settings.CENSUS_CAPACITY_SHARES = {"refresh": 0.3, "bulk": 0.05}
    now = timezone.now()
    registration, refresh, bulk = (
        CedulaInfo.objects.get(user=factories.member()) for _ in range(3)
    )
    CedulaInfo.objects.filter(pk=refresh.pk).update(
        work_class="refresh", status=Status.RETRYING, next_attempt_at=now + timedelta(seconds=5)
    )
    CedulaInfo.objects.filter(pk=bulk.pk).update(work_class="bulk", status=Status.FOUND)
    Attempt.objects.create(
        lookup=registration, step=1, outcome="deferred", work_class="registration"
    )
    Attempt.objects.create(
        lookup=refresh, step=1, outcome="timeout", sent=True, work_class="refresh"
    )
    Attempt.objects.create(lookup=bulk, step=1, outcome="found", sent=True, work_class="")
    Attempt.objects.create(
        lookup=bulk,
        step=2,
        outcome="found",
        sent=True,
        work_class="bulk",
        started_at=now - timedelta(days=3),  # a counter: never only the last hour
    )
    got = samples(client.get(URL, headers={"Authorization": "Bearer s3cret"}).content.decode())

    def by_class(name: str) -> dict[str, float]:
        return {dict(labels)["work_class"]: v for (n, labels), v in got.items() if n == name}

    assert by_class("census_lookups_waiting") == {
        "registration": 1,
        "refresh": 1,
        "bulk": 0,
        "unverified": 0,
    }
    assert by_class("census_capacity_share") == {"refresh": 0.3, "bulk": 0.05}
    assert by_class("census_consultas_sent_total") == {
        "registration": 0,
        "refresh": 1,
        "bulk": 1,
        "unverified": 0,
    }
