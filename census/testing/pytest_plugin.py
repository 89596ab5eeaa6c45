"""Pytest fixtures that serve the census simulator (no browser, no Django needed).

``census_simulator`` is one running simulator for the whole session; ``census_site`` is the
same simulator with its counters and access log cleared for the test. To change how it is
built, override ``census_simulator_options`` (session-scoped) in a conftest::

    @pytest.fixture(scope="session")
    def census_simulator_options():
        return {"slow_seconds": 3.0, "retry_after": 2}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from census.testing.simulator import CensusSimulator

#: Keyword arguments of the session simulator unless ``census_simulator_options`` is overridden.
SIMULATOR_OPTIONS: dict[str, Any] = {"slow_seconds": 120.0, "retry_after": 10, "captcha": "click"}


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
