"""End to end: registration -> real qcluster -> real Chromium -> the census-site simulator."""

from __future__ import annotations

from typing import Any

import pytest

from census.models import CedulaInfo, Status
from tests import factories
from tests.clusters import wait_until_final

# The path through Chromium; the pipeline on each broker is test_cluster.py's.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.any_database,
]


def browser_cluster(qcluster: Any, site: Any) -> Any:
    return qcluster(
        CENSUS_SCRAPER="census.scraper.playwright.PlaywrightScraper",
        CENSUS_SITE_URL=site.url,
        CENSUS_RATE_LIMIT_SECONDS="0.5",
        CENSUS_SCRAPE_TIMEOUT="20",
    )


def test_found_through_chromium(qcluster: Any, census_site: Any) -> None:
    """A registered member's lookup runs in Chromium against the simulator and ends FOUND."""
    cluster = browser_cluster(qcluster, census_site)
    number = factories.cedula("11")
    info = CedulaInfo.objects.get(user=factories.member(username=number))
    [info] = wait_until_final([info.pk], cluster, timeout=90)
    assert info.status == Status.FOUND, info.raw_response
    assert info.puesto and info.direccion and info.mesa and info.municipio
    assert census_site.consulta_count(number) == 1


def test_flaky_site_is_retried_until_found(qcluster: Any, census_site: Any) -> None:
    """The site fails the first request (HTTP 500); the scheduled retry finds the cédula."""
    cluster = browser_cluster(qcluster, census_site)
    number = factories.cedula("711")  # flaky: one HTTP 500, then found
    info = CedulaInfo.objects.get(user=factories.member(username=number))
    [info] = wait_until_final([info.pk], cluster, timeout=90)
    assert info.status == Status.FOUND, info.raw_response
    assert [a.outcome for a in info.attempts.order_by("step")] == ["connection_error", "found"]
    assert census_site.consulta_count(number) == 2
    assert info.retry_count == 1
