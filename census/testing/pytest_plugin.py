"""Pytest fixtures that serve the census simulator and a local solving service (no browser,
no Django needed).

``census_simulator`` is one running simulator for the whole session; ``census_site`` is the
same simulator with its counters and access log cleared for the test. To change how it is
built, override ``census_simulator_options`` (session-scoped) in a conftest::

    @pytest.fixture(scope="session")
    def census_simulator_options():
        return {"slow_seconds": 3.0, "retry_after": 2}

``census_solving_service`` is one running solving service for the session (2captcha's
protocol, shared by CapSolver, Anti-Captcha and CapMonster); ``census_captcha_service`` is the
same service reset for the test: no tasks, its first options and balance, no outage. Point
the app at it with ``settings.CENSUS_CAPTCHA = census_captcha_service.setting()``; change how
it is built with ``census_solving_service_options``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from census.testing.simulator import CensusSimulator
from census.testing.solving_service import SolvingService

#: Keyword arguments of the session simulator unless ``census_simulator_options`` is overridden.
SIMULATOR_OPTIONS: dict[str, Any] = {"slow_seconds": 120.0, "retry_after": 10, "captcha": "click"}
#: Keyword arguments of the session solving service unless ``census_solving_service_options``
#: is overridden: solves take 3 s.
SOLVING_SERVICE_OPTIONS: dict[str, Any] = {"solve_seconds": 3.0}


@pytest.fixture(scope="session")
def census_simulator_options() -> dict[str, Any]:
    """Keyword arguments for ``CensusSimulator``: ``slow_seconds``, ``retry_after``, ..."""
    return dict(SIMULATOR_OPTIONS)


@pytest.fixture(scope="session")
def census_simulator(census_simulator_options: dict[str, Any]) -> Iterator[CensusSimulator]:
    """A running census simulator on 127.0.0.1, shared by the session."""
    with CensusSimulator(**census_simulator_options) as simulator:
        yield simulator


@pytest.fixture
def census_site(census_simulator: CensusSimulator) -> CensusSimulator:
    """The session simulator with its flaky counters and access log cleared."""
    census_simulator.reset()
    return census_simulator


@pytest.fixture(scope="session")
def census_solving_service_options() -> dict[str, Any]:
    """Keyword arguments for ``SolvingService``: ``solve_seconds``, ``balance``, ``flavour``..."""
    return dict(SOLVING_SERVICE_OPTIONS)


@pytest.fixture(scope="session")
def census_solving_service(
    census_solving_service_options: dict[str, Any],
) -> Iterator[SolvingService]:
    """A running local solving service on 127.0.0.1, shared by the session."""
    with SolvingService(**census_solving_service_options) as service:
        yield service


@pytest.fixture
def census_captcha_service(census_solving_service: SolvingService) -> SolvingService:
    """The session solving service, reset: no tasks or tokens, first options, no outage."""
    census_solving_service.reset()
    return census_solving_service
