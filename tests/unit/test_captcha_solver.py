"""census.captcha.solver and census.conf: CENSUS_CAPTCHA alone makes the configured service
the scraper's solver; CENSUS_CAPTCHA_SOLVER keeps working and wins."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils.module_loading import import_string

from census.captcha.client import SolvingClient
from census.captcha.errors import CaptchaRequestError
from census.captcha.solver import solve_with_service
from census.conf import SERVICE_SOLVER
from census.conf import settings as census_settings
from census.testing.solving_service import SolvingService

pytestmark = pytest.mark.any_database

SITE_KEY = "6LcSimuladorCensoRegistraduriaLocal00000"
PAGE_URL = "http://127.0.0.1:8765/consultar/"
SETTING = {"service": "capsolver", "api_key": "k", "api_url": None}


def test_census_captcha_alone_makes_the_service_the_solver(settings: Any) -> None:
    """Only CENSUS_CAPTCHA: the scraper's config names solve_with_service, which imports."""
    settings.CENSUS_CAPTCHA = SETTING
    assert census_settings.scraper_config().solver_path == SERVICE_SOLVER
    assert import_string(SERVICE_SOLVER) is solve_with_service
    assert census_settings.captcha is not None
    assert census_settings.captcha.api_url == "https://api.capsolver.com"


def test_a_solver_callable_wins_over_census_captcha(settings: Any) -> None:
    """Both set: the callable, as before CENSUS_CAPTCHA existed (census.W008 says so)."""
    settings.CENSUS_CAPTCHA = SETTING
    settings.CENSUS_CAPTCHA_SOLVER = "census.testing.simulator.solve_captcha"
    assert census_settings.scraper_config().solver_path == "census.testing.simulator.solve_captcha"


def test_without_either_there_is_no_solver(settings: Any) -> None:
    """Neither set: no solver, no captcha config."""
    settings.CENSUS_CAPTCHA = None
    settings.CENSUS_CAPTCHA_SOLVER = None
    assert census_settings.scraper_config().solver_path is None
    assert census_settings.captcha is None


def test_solve_with_service_gets_a_token_the_site_will_accept(
    settings: Any, census_captcha_service: SolvingService
) -> None:
    """The configured (local) service's token, read from the settings at call time."""
    census_captcha_service.configure(solve_seconds=0)
    settings.CENSUS_CAPTCHA = census_captcha_service.setting()
    token = solve_with_service(SITE_KEY, PAGE_URL, sleep=lambda seconds: None)
    assert census_captcha_service.verify(token) == (True, "")
    (task,) = census_captcha_service.ledger().tasks
    assert (task.site_key, task.page_url) == (SITE_KEY, PAGE_URL)


def test_solve_with_service_without_the_setting_is_a_request_error(settings: Any) -> None:
    """Called with no CENSUS_CAPTCHA (a stale path): a CaptchaError saying so."""
    settings.CENSUS_CAPTCHA = None
    with pytest.raises(CaptchaRequestError, match="CENSUS_CAPTCHA is not set"):
        solve_with_service(SITE_KEY, PAGE_URL)


@pytest.mark.parametrize(("pool", "solve_timeout"), [(False, 45.0), (True, 120.0)])
def test_the_solve_inside_an_attempt_has_its_own_wait(
    settings: Any, monkeypatch: pytest.MonkeyPatch, pool: bool, solve_timeout: float
) -> None:
    """The wait for a token is CENSUS_CAPTCHA_SOLVE_TIMEOUT, whatever the scrape timeout
    (the page's budget stops while it runs); outside an attempt with the pool on, 120 s."""
    asked: dict[str, Any] = {}

    def solve(self: SolvingClient, site_key: str, page_url: str, **kwargs: Any) -> str:
        asked.update(kwargs)
        return "token"

    monkeypatch.setattr(SolvingClient, "solve", solve)
    settings.CENSUS_CAPTCHA = SETTING
    settings.CENSUS_CAPTCHA_POOL = pool
    settings.CENSUS_CAPTCHA_SOLVE_TIMEOUT = 45
    settings.CENSUS_SCRAPE_TIMEOUT = 10
    assert solve_with_service(SITE_KEY, PAGE_URL) == "token"
    assert asked == {"timeout": pytest.approx(solve_timeout, abs=0.5)}


def test_a_task_the_service_failed_is_asked_again_within_the_wait(
    settings: Any, census_captcha_service: SolvingService
) -> None:
    """Unsolvable once: a second task is asked and its token returned; the failed task is
    not paid (the service's failure, not the member's)."""
    census_captcha_service.configure(solve_seconds=0, unsolvable_every=2)
    settings.CENSUS_CAPTCHA = census_captcha_service.setting()
    solve_with_service(SITE_KEY, PAGE_URL, sleep=lambda seconds: None)  # task 1: solved
    token = solve_with_service(SITE_KEY, PAGE_URL, sleep=lambda seconds: None)  # 2 fails, 3
    assert census_captcha_service.verify(token) == (True, "")
    ledger = census_captcha_service.ledger()
    assert (ledger.created, ledger.unsolvable, ledger.paid) == (3, 1, 2)
