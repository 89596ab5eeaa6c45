"""The pause switch with a real qcluster: nothing is sent while paused, all of it after."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from census.models import Attempt, CedulaInfo, Status
from tests import factories
from tests.clusters import browser_cluster, register, wait_until_final
from tests.evidence import assert_attempts_match_requests

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_registrations_while_paused_wait_whole_and_finish_after_resume(qcluster: Any) -> None:
    """Six members register into a paused census: every task is held (no attempt row, no
    budget spent) for as long as the pause lasts; after census_resume each is found with one
    attempt."""
    call_command("census_pause", "--reason", "test", "--by", "ops", stdout=StringIO())
    numbers = [factories.cedula() for _ in range(6)]
    cluster = qcluster({n: ["found"] for n in numbers})
    ids = register(numbers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until every task has run and been held
        held = {e["lookup_id"] for e in cluster.events() if e["event"] == "attempt_held"}
        if held >= set(ids):
            break
        time.sleep(0.2)
    assert held >= set(ids), cluster.output()[-2000:]
    time.sleep(2)  # a moment more: nothing else may happen while paused
    assert set(CedulaInfo.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        Status.PENDING
    }
    assert not Attempt.objects.filter(lookup_id__in=ids).exists()

    out = StringIO()
    call_command("census_resume", "--by", "ops", stdout=out)
    assert "6 waiting lookup(s) queued" in out.getvalue()
    infos = wait_until_final(ids, cluster, timeout=120)
    assert {i.status for i in infos} == {Status.FOUND}
    assert [i.attempts.count() for i in infos] == [1] * 6
    assert [i.retry_count for i in infos] == [0] * 6


@pytest.mark.browser
def test_nothing_reaches_the_site_while_paused_and_attempts_match_requests_after(
    qcluster: Any, census_site: Any
) -> None:
    """With Chromium and the simulator: four members register into a paused census and the
    site receives no request at all (not even a page load) until census_resume; then each
    is found, and every attempt that says it sent matches one consulta in the access log."""
    call_command("census_pause", "--reason", "test", "--by", "ops", stdout=StringIO())
    numbers = [factories.cedula("10") for _ in range(4)]
    cluster = browser_cluster(qcluster, census_site)
    ids = register(numbers)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        held = {e["lookup_id"] for e in cluster.events() if e["event"] == "attempt_held"}
        if held >= set(ids):
            break
        time.sleep(0.2)
    assert held >= set(ids), cluster.output()[-2000:]
    time.sleep(2)
    assert census_site.access_log == []
    call_command("census_resume", "--by", "ops", stdout=StringIO())
    infos = wait_until_final(ids, cluster, timeout=180)
    assert [i.status for i in infos] == [Status.FOUND] * 4, [i.raw_response for i in infos]
    assert len(census_site.consultas()) == 4
    assert_attempts_match_requests(census_site, infos)
