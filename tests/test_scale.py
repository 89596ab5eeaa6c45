"""Scale-out on the real servers: PostgreSQL, the Redis broker, two qcluster processes.

Runs in ./test's PostgreSQL pass (CENSUS_TEST_DATABASE=postgres CENSUS_TEST_BROKER=redis);
tests/conftest.py deselects it, saying so, in a run on the embedded SQLite default.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from census.models import Attempt, Status
from census.testing.simulator import CensusSimulator, cedula_key
from tests import factories
from tests.conftest import browser_cluster, register, wait_until_final
from tests.evidence import assert_no_cedula_stored, consultas_by_member, final_events, summary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.scale,
    pytest.mark.django_db(transaction=True),
]

#: 2 s, not 1 s: at 1 s four Chromium lookups (1.35 CPU-s each) saturate two cores and the
#: gaps the simulator sees shrink by the machine's scheduling jitter (./bench: closest pair
#: 0.928 s at 1 s, 3.098 s at 3 s; BENCHMARKS.md).
RATE_LIMIT = 2.0
#: What the site-side stamps may lose to scheduling on this loaded 2-core machine: the gate
#: spaces slots RATE_LIMIT + 0.1 s apart, the simulator stamps each request in a thread of
#: this process, and clean-clone CI runs saw pairs 0.19 s (at 1 s) and 0.04 s (at 2 s) under
#: the limit. Two clusters not sharing the gate would send pairs ~0 s apart, far below this.
STAMP_JITTER = 0.5

#: (prefix, expected final status, how many members): 40 in all.
MIX = (
    ("10", Status.FOUND, 12),
    ("20", Status.NOT_FOUND, 8),
    ("30", Status.CANCELLED, 6),
    ("710", Status.FOUND, 5),  # the F5 block page once, then found
    ("714", Status.FOUND, 4),  # too slow once (a timeout), then found
    ("715", Status.FOUND, 4),  # HTTP 429 once, then found
    ("50", Status.ERROR, 1),  # a captcha challenge every time: uses up its attempts
)


@pytest.fixture
def site() -> Any:
    """A simulator whose slow answers outlast the 10 s scrape timeout."""
    with CensusSimulator(slow_seconds=14.0, retry_after=2) as simulator:
        yield simulator


def test_two_clusters_on_postgres_and_redis_survive_a_sigkill(qcluster: Any, site: Any) -> None:
    """40 lookups, one of two clusters SIGKILLed midway: every lookup ends right, once."""
    env = {
        "CENSUS_SCRAPE_TIMEOUT": "10",
        "CENSUS_RATE_LIMIT_SECONDS": f"{RATE_LIMIT:g}",
        # The kill costs some lookups an attempt (lost), and a loaded machine may cost one
        # more (a timeout): the budget is not what this test is about.
        "CENSUS_MAX_ATTEMPTS": "5",
    }
    doomed = browser_cluster(qcluster, site, **env)
    survivor = browser_cluster(qcluster, site, **env)
    expected = {
        factories.cedula(prefix): status for prefix, status, count in MIX for _ in range(count)
    }
    started = time.monotonic()
    ids = register(list(expected))

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if len(site.consultas()) >= 12 and doomed.busy_workers():
            break
        time.sleep(0.2)
    assert doomed.busy_workers(), "the cluster to kill never ran a lookup"
    doomed.kill()
    killed_at = len(site.consultas())

    infos = wait_until_final(ids, survivor, timeout=900)
    elapsed = time.monotonic() - started
    for info in infos:
        assert info.status == expected[info.user.username], (info.pk, info.raw_response)

    # Each lookup reached its final status once, whichever cluster logged it.
    finals = final_events(doomed) + final_events(survivor)
    assert set(finals) == {i.pk for i in infos} and set(finals.values()) == {1}

    # Attempts against requests: a killed attempt may or may not have reached the site.
    received = consultas_by_member(site)
    for info in infos:
        sent = Attempt.objects.filter(lookup=info, sent=True).count()
        lost = Attempt.objects.filter(lookup=info, outcome__in=["lost", "task_failed"]).count()
        assert sent <= received[cedula_key(info.user.username)] <= sent + lost

    # The rate limit held across both clusters (one gate: no two requests in one slot).
    times = [record.monotonic for record in site.consultas()]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= RATE_LIMIT - STAMP_JITTER, sorted(gaps)[:5]

    # The survivor finished what the killed cluster held: its running attempts and the
    # Redis messages it had taken with it.
    recovered = Counter(
        e["event"]
        for e in survivor.events()
        if e["event"] in ("attempt_lost", "lookup_resumed", "attempt_finished")
    )
    assert recovered["attempt_lost"] + recovered["lookup_resumed"] >= 1
    assert_no_cedula_stored(list(expected), survivor)
    summary(
        "scale",
        infos,
        site,
        kills=1,
        consultas_before_kill=killed_at,
        min_gap_s=round(min(gaps), 3),
        lost=recovered["attempt_lost"],
        resumed=recovered["lookup_resumed"],
        elapsed_s=round(elapsed, 1),
    )
