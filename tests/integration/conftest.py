"""Fixtures of the real-process tests; the helpers are in tests/clusters.py and tests/sites.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from census.testing.simulator import CensusSimulator
from census.testing.solving_service import SolvingService
from tests.sites import RETRY_AFTER, TIMEOUT


@pytest.fixture(scope="module")
def simulator() -> Iterator[CensusSimulator]:
    """The scraper tests' simulator, one per module: a short Retry-After, and a slow answer
    far beyond any test's timeout."""
    with CensusSimulator(slow_seconds=60.0, retry_after=RETRY_AFTER, captcha="click") as site:
        yield site


@pytest.fixture
def site(simulator: CensusSimulator) -> Iterator[CensusSimulator]:
    """``simulator`` with its log cleared, and census's settings pointed at it (no rate limit,
    no captcha solver). Modules that need another simulator define their own ``site``."""
    simulator.reset()
    with override_settings(
        CENSUS_SITE_URL=simulator.url,
        CENSUS_SCRAPE_TIMEOUT=TIMEOUT,
        CENSUS_RATE_LIMIT_SECONDS=0,
        CENSUS_CAPTCHA_SOLVER=None,
    ):
        yield simulator


@pytest.fixture
def service() -> Iterator[SolvingService]:
    """A local solving service of its own, 2 s a solve (the captcha tests count its ledger)."""
    with SolvingService(solve_seconds=2.0) as solving:
        yield solving


@pytest.fixture
def live_site(service: SolvingService) -> Iterator[CensusSimulator]:
    """The simulator as the live site is to a browser: a challenge on every click, each
    consulta's token checked with ``service``."""
    with CensusSimulator(retry_after=2, token_verifier=service.verify) as site:
        yield site
