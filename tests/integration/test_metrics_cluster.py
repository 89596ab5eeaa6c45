"""Metrics scraped while a real qcluster works: what its workers wrote, the view reports."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Count

from census.models import Attempt, CedulaInfo, FollowUp
from tests import factories
from tests.clusters import register, wait_until_final
from tests.unit.test_metrics import URL, samples

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCRIPTS = (["found"], ["timeout", "found"], ["not_found"], ["captcha_failed", "cancelled"])


def test_a_running_clusters_work_is_what_the_metrics_say(qcluster: Any, settings: Any) -> None:
    """Eight lookups through two workers, then a scrape (the cluster still running): each
    gauge, counter and histogram count equals the database's own count."""
    settings.CENSUS_METRICS_TOKEN = "t"
    numbers = [factories.cedula() for _ in range(2 * len(SCRIPTS))]
    script = {n: SCRIPTS[i % len(SCRIPTS)] for i, n in enumerate(numbers)}
    cluster = qcluster(script)
    ids = register(numbers)
    wait_until_final(ids, cluster, timeout=120)
    from django.test import Client

    response = Client().get(URL, headers={"Authorization": "Bearer t"})
    assert response.status_code == 200
    got = samples(response.content.decode())

    statuses = dict(CedulaInfo.objects.values_list("status").annotate(n=Count("pk")))
    for status, count in statuses.items():
        assert got[("census_lookups", (("status", status),))] == count
    assert statuses == {"found": 4, "not_found": 2, "cancelled": 2}
    outcomes = dict(Attempt.objects.values_list("outcome").annotate(n=Count("pk")))
    for outcome, count in outcomes.items():
        assert got[("census_attempts_total", (("outcome", outcome),))] == count
    assert sum(outcomes.values()) == 12
    ran = Attempt.objects.exclude(outcome="deferred").filter(duration_ms__isnull=False).count()
    assert got[("census_attempt_duration_seconds_count", ())] == ran == 12
    retried = Attempt.objects.filter(due_at__isnull=False).count()
    assert got[("census_retry_lateness_seconds_count", ())] == retried == 4
    assert got[("census_follow_ups", (("state", "succeeded"),))] == FollowUp.objects.count()
