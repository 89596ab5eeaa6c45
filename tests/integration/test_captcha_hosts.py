"""The captcha token pool shared by two hosts: two qclusters on PostgreSQL and the Redis broker
drive Chromium against the live-like simulator (a challenge on every click, each token
checked with the solving service), and one pool serves them both.

Every token is taken by one attempt only (the site would refuse a reused one), none leaves
stale, and what the service charged is what the database counts.
Runs in ./test's PostgreSQL pass (marker ``scale``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from census.captcha import policy, pool
from census.models import CaptchaToken, Status
from census.testing.simulator import CensusSimulator
from census.testing.solving_service import SolvingService
from tests import factories
from tests.clusters import browser_cluster, register, wait_until_final
from tests.evidence import assert_attempts_match_requests, assert_no_cedula_stored, summary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.scale,
    pytest.mark.django_db(transaction=True),
]

LIMIT = 2.0
SOLVE_SECONDS = 2.0  # the ``service`` fixture's


def test_two_hosts_share_one_pool_and_no_token_is_sent_twice(
    qcluster: Any, service: SolvingService, live_site: CensusSimulator
) -> None:
    """Ten members on two clusters: all found, ten consultas, ten tokens used, none reused
    or expired; each used token went out with one lookup; the service charged what the
    database counts, at most the pool's depth more than the consultas."""
    env = {
        "CENSUS_TEST_CAPTCHA_JSON": json.dumps(service.setting()),
        "CENSUS_RATE_LIMIT_SECONDS": f"{LIMIT:g}",
    }
    first = browser_cluster(qcluster, live_site, **env)
    browser_cluster(qcluster, live_site, **env)
    numbers = [factories.cedula("10") for _ in range(10)]
    infos = wait_until_final(register(numbers), first, timeout=300)
    assert {i.status for i in infos} == {Status.FOUND}
    consultas = len(live_site.consultas())
    ledger = service.ledger()
    assert consultas == 10 and ledger.used == 10
    assert live_site.token_rejections() == {}
    assert ledger.paid <= consultas + policy.depth(SOLVE_SECONDS, LIMIT)
    counted = pool.ledger()
    assert (counted["paid"], counted["used"]) == (ledger.paid, consultas)
    used = CaptchaToken.objects.filter(state=CaptchaToken.State.USED)
    assert sorted(used.values_list("lookup_id", flat=True)) == sorted(i.pk for i in infos)
    assert_attempts_match_requests(live_site, infos)
    assert_no_cedula_stored(numbers, first)
    summary("captcha_hosts", infos, live_site, solves_paid=ledger.paid, tokens_used=ledger.used)
