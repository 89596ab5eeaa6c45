"""The configured solving service (``CENSUS_CAPTCHA``) as the scraper's captcha solver.

``census.conf`` points the scraper at ``solve_with_service`` when ``CENSUS_CAPTCHA`` is set
and ``CENSUS_CAPTCHA_SOLVER`` is not: the scraper keeps calling a dotted
``callable(site_key, page_url) -> token`` and never reads a setting itself.

With the pool on (``CENSUS_CAPTCHA_POOL``, the default) the token was solved ahead and taken
before the browser opened (``census.captcha.pool``): this hands it over. With the pool off,
the solve runs here, inside the attempt, and the page's budget stops while it runs.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from census.captcha import pool
from census.captcha.client import SolvingClient
from census.captcha.errors import (
    CaptchaNotSolved,
    CaptchaRequestError,
    CaptchaServiceUnavailable,
    CaptchaSolveTimeout,
)
from census.conf import settings

#: Longest wait for a token inside an attempt when no setting says (outside an attempt).
SOLVE_TIMEOUT_IN_ATTEMPT = 120.0


def solve_with_service(site_key: str, page_url: str, **options: Any) -> str:
    """A token for this page; raises a ``census.captcha.CaptchaError``.

    Inside an attempt with the pool on: the token the attempt holds (``pool.NoTokenHeld``, a
    deferral, when it holds none for this page). Otherwise a solve asked now: a task the
    service failed (unsolvable, lost, its own timeout) is asked again while the wait allows
    (the service's failure is not the member's, and it is not paid); a service that cannot
    serve the account (``CaptchaServiceUnavailable``) is raised at once, and its
    ``defer_seconds`` tells the scraper to defer the lookup, uncharged.

    ``options`` go to ``SolvingClient`` (tests inject ``sleep`` and ``clock``); the scraper
    passes none."""
    held = pool.held()
    if held is not None:
        held.seen = (site_key, page_url)
        if held.pool:
            return held.hand_over(site_key)
    config = settings.captcha
    if config is None:
        raise CaptchaRequestError("CENSUS_CAPTCHA is not set", reason="unconfigured")
    timeout = settings.solve_in_attempt or SOLVE_TIMEOUT_IN_ATTEMPT
    client = SolvingClient.from_config(config, **options)
    deadline = client.now() + timeout
    asked = timezone.now()
    while True:
        try:
            token = client.solve(site_key, page_url, timeout=deadline - client.now())
        except CaptchaServiceUnavailable as error:
            if held is not None:
                held.service_failure = error.reason or "unavailable"
            raise
        except CaptchaSolveTimeout:
            raise
        except CaptchaNotSolved:
            if deadline - client.now() < client.first_poll:
                raise
            continue
        if held is not None:
            solved = pool.Solved(config.service, asked, timezone.now(), site_key, page_url)
            held.solved_here.append(solved)
        return token
