"""Lookups against the live site's captcha, with real processes: a qcluster drives Chromium
against the simulator in its default mode (an image challenge on every click, the submit
enabled by the widget's callback only, each token checked with the solving service) and the
local solving service, over its HTTP protocol, solves each challenge in seconds.

What the site received (its access log), what the service charged (its ledger) and what the
database says are counted against each other.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from census.captcha import breaker, policy, pool
from census.models import Attempt, Status
from census.testing.simulator import CensusSimulator
from census.testing.solving_service import SolvingService
from tests import factories
from tests.clusters import ClusterProcess, browser_cluster, register, wait_until_final
from tests.evidence import assert_attempts_match_requests, assert_no_cedula_stored, summary

# Chromium, the simulator and the service: nothing here differs between databases.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.any_database,
]

#: (prefix, final status, how many members).
MIX = (("10", Status.FOUND, 3), ("20", Status.NOT_FOUND, 1), ("30", Status.CANCELLED, 1))


def test_every_member_is_right_and_each_consulta_used_one_paid_solve(
    qcluster: Any, service: SolvingService, live_site: CensusSimulator
) -> None:
    """With a solving service configured, every lookup ends right; each consulta carried a
    token the service issued and the site accepted; every paid solve was used.

    Without the callback the page's submit stays disabled (every lookup captcha_failed, then
    error); without a service the challenge is never passed (the test below)."""
    cluster = browser_cluster(
        qcluster, live_site, CENSUS_TEST_CAPTCHA_JSON=json.dumps(service.setting())
    )
    expected = {
        factories.cedula(prefix): status for prefix, status, count in MIX for _ in range(count)
    }
    infos = wait_until_final(register(list(expected)), cluster, timeout=300)
    for info in infos:
        assert info.status == expected[info.user.username], (info.pk, info.raw_response)
    consultas = len(live_site.consultas())
    ledger = service.ledger()
    assert consultas == len(infos)
    # Solved ahead by the pool, never deeper than the lookups due: every token the site
    # took was one the service issued, none expired or reused; what the service charged is
    # what the database counts, and at most the pool's idle depth was never sent.
    assert ledger.used == consultas and live_site.token_rejections() == {}
    assert consultas <= ledger.paid <= consultas + policy.depth(2.0, 1.0)
    counted = pool.ledger()
    assert (counted["paid"], counted["used"], counted["refused"]) == (ledger.paid, consultas, 0)
    assert counted["paid"] == counted["used"] + counted["wasted"] + counted["ready"]
    assert_attempts_match_requests(live_site, infos)
    assert_no_cedula_stored(list(expected), cluster)
    summary(
        "captcha",
        infos,
        live_site,
        solves_paid=ledger.paid,
        tokens_used=ledger.used,
        solves_per_lookup=round(ledger.paid / len(infos), 3),
        spent_usd=round(ledger.spent, 5),
    )


def test_without_a_solving_service_no_lookup_passes_the_challenge(
    qcluster: Any, live_site: CensusSimulator
) -> None:
    """The same site with no service configured: the challenge is never passed, nothing is
    sent, and the lookups end in error (captcha_failed), as a deployment without a service
    would against the live site."""
    cluster = browser_cluster(qcluster, live_site, CENSUS_MAX_ATTEMPTS="1")
    infos = wait_until_final(register([factories.cedula("10") for _ in range(2)]), cluster)
    assert {(i.status, i.final_reason) for i in infos} == {(Status.ERROR, "captcha_failed")}
    assert live_site.consultas() == []
    summary("captcha_none", infos, live_site)


def _wait_for_zero_balance_waits(lookup_ids: list[int], cluster: ClusterProcess) -> None:
    """Until the service is paused for its balance and every lookup has waited for it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = breaker.service_row()
        waited = set(
            Attempt.objects.filter(
                lookup_id__in=lookup_ids, outcome="deferred", error__startswith="captcha_service"
            ).values_list("lookup_id", flat=True)
        )
        if row is not None and row.reason == "zero_balance" and waited == set(lookup_ids):
            return
        time.sleep(0.2)
    raise AssertionError(f"no zero-balance wait for every lookup\n{cluster.output()[-3000:]}")


def test_a_zero_balance_spell_charges_nobody(
    qcluster: Any, service: SolvingService, live_site: CensusSimulator
) -> None:
    """The account has no money when a burst registers: the service is paused for every
    host, the lookups wait (captcha_service, deferred), nothing is sent, paid or charged.
    Money comes back: the service's probe resumes the pool and every lookup ends right on
    its first attempt, one paid solve per consulta."""
    service.balance = 0
    cluster = browser_cluster(
        qcluster,
        live_site,
        CENSUS_TEST_CAPTCHA_JSON=json.dumps(service.setting()),
        CENSUS_CAPTCHA_PROBE_SECONDS="3",
    )
    numbers = [factories.cedula("10") for _ in range(3)]
    ids = register(numbers)
    _wait_for_zero_balance_waits(ids, cluster)
    assert live_site.consultas() == [] and service.ledger().paid == 0
    service.balance = 10
    infos = wait_until_final(ids, cluster, timeout=240)
    assert [(i.status, i.retry_count) for i in infos] == [(Status.FOUND, 0)] * 3
    ledger = service.ledger()
    consultas = len(live_site.consultas())
    assert consultas == 3 and ledger.used == 3 and live_site.token_rejections() == {}
    assert ledger.paid <= consultas + policy.depth(2.0, 1.0)
    assert Attempt.objects.filter(lookup_id__in=ids).exclude(outcome="deferred").count() == 3
    assert_no_cedula_stored(numbers, cluster)
    summary("captcha_zero_balance", infos, live_site, solves_paid=ledger.paid)
