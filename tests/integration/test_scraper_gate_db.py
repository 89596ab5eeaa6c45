"""PlaywrightScraper with the database-backed gate, in real Chromium: a Retry-After holds
the next request back, and two worker processes never send closer than the limit. The
gate's row lives in the database, so this runs in both passes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from census.conf import settings as census_settings
from census.gate.waiter import GateWaiter
from census.models import RateGate as RateGateRow
from census.outcomes import Outcome
from census.scraper.playwright import PlaywrightScraper
from census.testing.simulator import CensusSimulator
from tests.sites import RETRY_AFTER, worker_process

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_retry_after_holds_the_next_request_back(site: CensusSimulator) -> None:
    """A 429's Retry-After opens the breaker: the next lookup is deferred, then probes."""
    scraper = PlaywrightScraper(
        gate=GateWaiter(interval=0.5), config=census_settings.scraper_config()
    )
    blocked = scraper.lookup("4200000003")
    assert blocked.outcome is Outcome.BLOCKED and blocked.retry_after == RETRY_AFTER
    assert RateGateRow.objects.get(name="census").breaker_until is not None
    deferred = scraper.lookup("1000000003")
    assert deferred.outcome is Outcome.DEFERRED, deferred.detail
    assert deferred.retry_after is not None and 0 < deferred.retry_after <= RETRY_AFTER
    assert len(site.consultas()) == 1  # nothing was sent while the breaker was open
    time.sleep(deferred.retry_after)
    found = scraper.lookup("1000000003")
    assert found.outcome is Outcome.FOUND, found.detail
    assert RateGateRow.objects.get(name="census").breaker_until is None  # the probe closed it
    first, second = site.consultas()
    assert second.monotonic - first.monotonic >= RETRY_AFTER


_WORKER = r"""
import json, sys
import django
django.setup()
from census.conf import settings
from census.gate.waiter import GateWaiter
from census.scraper.playwright import PlaywrightScraper
mode, cedulas = sys.argv[1], sys.argv[2:]
scraper = PlaywrightScraper(gate=GateWaiter(), config=settings.scraper_config())
for cedula in cedulas:
    result = scraper.lookup(cedula)
    print("RESULT " + json.dumps([result.outcome.value, result.detail]), flush=True)
"""


def _worker(site: CensusSimulator, *args: str, **env: str) -> subprocess.Popen[str]:
    """A process standing in for a Django-Q2 worker that runs lookups."""
    return worker_process(_WORKER, site, *args, **env)


@pytest.mark.django_db(transaction=True)
def test_rate_limit_holds_across_worker_processes(site: CensusSimulator) -> None:
    """Two worker processes sharing the gate never send consultas closer than the limit."""
    limit = 1.5
    workers = [
        _worker(
            site, "turns", f"10{n}0000001", f"10{n}0000002", CENSUS_RATE_LIMIT_SECONDS=str(limit)
        )
        for n in (1, 2)
    ]
    try:
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    results = [
        json.loads(line.removeprefix("RESULT "))
        for out, _ in outputs
        for line in out.splitlines()
        if line.startswith("RESULT ")
    ]
    assert [outcome for outcome, _ in results] == ["found"] * 4, outputs
    arrivals = sorted(record.monotonic for record in site.consultas())
    assert len(arrivals) == 4
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= limit, gaps
