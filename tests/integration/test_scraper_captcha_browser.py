"""The captcha as the live site shows it to an automated browser, through real Chromium.

The simulator's default captcha (``captcha="challenge"``): every click on the checkbox opens
an image challenge and gives no token; the page sends only the token its widget's callback
handed over, and enables its submit only then. The solver here is the simulator's own solve
endpoint (``census.testing.simulator.solve_captcha``), standing in for a solving service.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from census.captcha.errors import SERVICE_WAIT_SECONDS
from census.conf import settings as census_settings
from census.gate.protocol import OpenGate
from census.outcomes import Outcome
from census.scraper.base import LookupResult
from census.scraper.playwright import PlaywrightScraper
from census.testing.simulator import SITE_KEY, CensusSimulator, solve_captcha
from census.testing.solving_service import SolvingService
from tests.sites import TIMEOUT

# The browser against the simulator (an open gate, no database): one pass is enough.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.any_database]

SOLVER = "census.testing.simulator.solve_captcha"


@pytest.fixture(scope="module")
def live_site() -> Iterator[CensusSimulator]:
    with CensusSimulator() as site:  # the default: the live site's image challenge
        yield site


@pytest.fixture
def site(live_site: CensusSimulator) -> CensusSimulator:
    live_site.reset()
    return live_site


def _lookup(site: CensusSimulator, cedula: str, solver: str | None) -> LookupResult:
    with override_settings(
        CENSUS_SITE_URL=site.url,
        CENSUS_SCRAPE_TIMEOUT=TIMEOUT,
        CENSUS_RATE_LIMIT_SECONDS=0,
        CENSUS_CAPTCHA_SOLVER=solver,
    ):
        config = census_settings.scraper_config()
        return PlaywrightScraper(gate=OpenGate(), config=config).lookup(cedula)


def test_without_a_solver_every_lookup_is_a_captcha_failure(site: CensusSimulator) -> None:
    """The click gives an image challenge, never a token: captcha_failed, nothing sent."""
    result = _lookup(site, "1000000101", solver=None)
    assert result.outcome is Outcome.CAPTCHA_FAILED, result.detail
    assert "image challenge" in result.detail and "no solver" in result.detail
    assert site.consultas() == []


def test_a_solved_token_reaches_the_site_through_the_widget_callback(
    site: CensusSimulator,
) -> None:
    """A solver's token handed to the widget's callback enables the submit: the consulta
    carries it and the site accepts it (written only into the textarea, the submit would
    stay disabled and the lookup fail)."""
    result = _lookup(site, "1000000102", solver=SOLVER)
    assert result.outcome is Outcome.FOUND, result.detail
    assert len(site.consultas()) == 1
    assert site.token_rejections() == {}


def test_a_token_only_in_the_textarea_never_leaves_the_page(site: CensusSimulator) -> None:
    """What clients that skip the callback do: the token in the textarea and getResponse.
    The submit stays disabled, and even a submit forced by script sends nothing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    token = solve_captcha(SITE_KEY, site.url)
    assert token
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page()
            page.goto(site.url)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#eleccion option')].some(o => o.value)"
            )
            page.fill("#documento", "1000000103")
            page.evaluate(
                """(token) => {
                  document.getElementById('g-recaptcha-response').value = token;
                  window.grecaptcha.getResponse = () => token;
                }""",
                token,
            )
            assert page.locator("#submitBtn").is_disabled()
            page.evaluate("() => document.getElementById('consultaForm').requestSubmit()")
            page.wait_for_function("() => !document.getElementById('mensaje').hidden")
            shown = page.inner_text("#mensaje")
        finally:
            browser.close()
    assert "no es un robot" in shown
    assert site.consultas() == []


def test_a_solving_service_that_cannot_serve_defers_the_lookup_uncharged(
    site: CensusSimulator,
) -> None:
    """A zero balance at the configured service: the lookup is deferred (not charged, nothing
    sent) for the service's wait, not failed as the member's captcha."""
    with SolvingService(balance=0.0) as service:
        with override_settings(CENSUS_CAPTCHA=service.setting()):
            result = _lookup(site, "1000000104", solver=None)
        ledger = service.ledger()
    assert result.outcome is Outcome.DEFERRED, result.detail
    assert result.detail.startswith("captcha_service:") and "zero_balance" in result.detail
    assert result.retry_after == SERVICE_WAIT_SECONDS
    assert result.meta["sent"] is False and site.consultas() == []
    assert ledger.paid == 0
