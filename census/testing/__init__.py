"""Test tools for projects using census: the census-site simulator, a local captcha-solving
service and a scripted scraper.

pytest fixtures: ``pytest_plugins = ["census.testing.pytest_plugin"]`` (``census_site``,
``census_simulator``, ``census_captcha_service``, ``census_solving_service``). The scripted
scraper: ``CENSUS_SCRAPER = "census.testing.fake.FakeScraper"`` with ``CENSUS_FAKE_SCRIPT``.
"""

from __future__ import annotations

from census.testing.fake import FakeScraper
from census.testing.scenarios import Scenario, scenario_for
from census.testing.simulator import AccessRecord, CensusSimulator, cedula_key
from census.testing.solving_service import Ledger, SolvingService, TaskRecord

__all__ = [
    "AccessRecord",
    "CensusSimulator",
    "FakeScraper",
    "Ledger",
    "Scenario",
    "SolvingService",
    "TaskRecord",
    "cedula_key",
    "scenario_for",
]
