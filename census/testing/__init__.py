"""Test tools for projects using census: the census-site simulator and a scripted scraper.

pytest fixtures: ``pytest_plugins = ["census.testing.pytest_plugin"]`` (``census_site``,
``census_simulator``). The scripted scraper: ``CENSUS_SCRAPER =
"census.testing.fake.FakeScraper"`` with ``CENSUS_FAKE_SCRIPT``.
"""

from __future__ import annotations

from census.testing.fake import FakeScraper
from census.testing.scenarios import Scenario, scenario_for
from census.testing.simulator import AccessRecord, CensusSimulator, cedula_key

__all__ = [
    "AccessRecord",
    "CensusSimulator",
    "FakeScraper",
    "Scenario",
    "cedula_key",
    "scenario_for",
]
