"""The configured solving service (``CENSUS_CAPTCHA``) as the scraper's captcha solver.

``census.conf`` points the scraper at ``solve_with_service`` when ``CENSUS_CAPTCHA`` is set
and ``CENSUS_CAPTCHA_SOLVER`` is not: the scraper keeps calling a dotted
``callable(site_key, page_url) -> token`` and never reads a setting itself.
"""

from __future__ import annotations

from typing import Any

from census.captcha.client import SolvingClient
from census.captcha.errors import CaptchaNotSolved, CaptchaRequestError, CaptchaSolveTimeout
from census.conf import settings

#: Longest wait for a token inside an attempt (never more than 2/3 of the scrape budget): the
#: page is already open and its budget is running.
SOLVE_TIMEOUT_IN_ATTEMPT = 60.0


def solve_with_service(site_key: str, page_url: str, **options: Any) -> str:
    """A token from the ``CENSUS_CAPTCHA`` service; raises a ``census.captcha.CaptchaError``.

    A task the service failed (unsolvable, lost, its own timeout) is asked again while the
    wait allows: the service's failure is not the member's, and it is not paid. A service
    that cannot serve the account (``CaptchaServiceUnavailable``) is raised at once: its
    ``defer_seconds`` tells the scraper to defer the lookup, uncharged.

    ``options`` go to ``SolvingClient`` (tests inject ``sleep`` and ``clock``); the scraper
    passes none."""
    config = settings.captcha
    if config is None:
        raise CaptchaRequestError("CENSUS_CAPTCHA is not set", reason="unconfigured")
    timeout = min(SOLVE_TIMEOUT_IN_ATTEMPT, settings.scrape_timeout * 2 / 3)
    client = SolvingClient.from_config(config, **options)
    deadline = client.now() + timeout
    while True:
        try:
            return client.solve(site_key, page_url, timeout=deadline - client.now())
        except CaptchaSolveTimeout:
            raise
        except CaptchaNotSolved:
            if deadline - client.now() < client.first_poll:
                raise
