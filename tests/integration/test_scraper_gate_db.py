"""PlaywrightScraper with the database-backed gate, in real Chromium: a Retry-After holds
the next request back, and two worker processes never send closer than the limit. The
gate's row lives in the database, so this runs in both passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from census.conf import settings as census_settings
from census.gate.waiter import GateWaiter
from census.models import RateGate as RateGateRow
from census.outcomes import Outcome
from census.scraper.playwright import PlaywrightScraper
from census.testing.simulator import CensusSimulator

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a normal lookup may take here (a loaded 2-CPU machine needs ~3 s).
TIMEOUT = 15
RETRY_AFTER = 3


@pytest.fixture(scope="module")
def simulator() -> Iterator[CensusSimulator]:
    # Its own simulator: a short Retry-After, and a slow answer far beyond any test timeout.
    with CensusSimulator(slow_seconds=60.0, retry_after=RETRY_AFTER) as site:
        yield site


@pytest.fixture
def site(simulator: CensusSimulator) -> Iterator[CensusSimulator]:
    simulator.reset()
    with override_settings(
        CENSUS_SITE_URL=simulator.url,
        CENSUS_SCRAPE_TIMEOUT=TIMEOUT,
        CENSUS_RATE_LIMIT_SECONDS=0,
        CENSUS_CAPTCHA_SOLVER=None,
    ):
        yield simulator


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
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "CENSUS_TEST_DB": str(django_settings.DATABASES["default"]["NAME"]),
            "CENSUS_SITE_URL": site.url,
            "CENSUS_SCRAPE_TIMEOUT": str(TIMEOUT),
            "CENSUS_LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
