"""PlaywrightScraper and a closed rate gate: no browser, and a retry_after for the pipeline."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from census.outcomes import Outcome
from census.scraper.playwright import PlaywrightScraper, ScraperConfig


class ClosedGate:
    """A gate a block pushed 100 s out."""

    def __init__(self) -> None:
        self.opens = timezone.now() + timedelta(seconds=100)
        self.turns = 0

    def wait_turn(self, deadline: datetime | None = None, sleep: Any = None) -> float | None:
        self.turns += 1
        return None

    def push_back(self, seconds: float) -> None:
        return None

    def next_allowed_at(self) -> datetime | None:
        return self.opens


def test_closed_gate_skips_the_browser_and_says_when_it_opens(census_site: Any) -> None:
    """A gate closed past the scrape timeout: no request, timeout outcome, retry_after ~100 s."""
    gate = ClosedGate()
    config = ScraperConfig(site_url=census_site.url, timeout=10)
    result = PlaywrightScraper(gate=gate, config=config).lookup("1012345678")
    assert result.outcome is Outcome.TIMEOUT
    assert result.retry_after is not None and 95 < result.retry_after <= 100
    assert census_site.access_log == []
    assert gate.turns == 0


class RecordingGate:
    """An open gate that remembers how far blocks pushed it back."""

    def __init__(self) -> None:
        self.pushes: list[float] = []

    def wait_turn(self, deadline: datetime | None = None, sleep: Any = None) -> float | None:
        return 0.0

    def push_back(self, seconds: float) -> None:
        self.pushes.append(seconds)

    def next_allowed_at(self) -> datetime | None:
        return None


@pytest.mark.slow
@pytest.mark.browser
def test_block_page_pushes_the_gate_back_by_the_setting(census_site: Any) -> None:
    """An F5 block page with no Retry-After backs off CENSUS_BLOCK_BACKOFF_SECONDS."""
    gate = RecordingGate()
    config = ScraperConfig(site_url=census_site.url, timeout=20)
    with override_settings(CENSUS_BLOCK_BACKOFF_SECONDS=7):
        result = PlaywrightScraper(gate=gate, config=config).lookup("4000000001")
    assert result.outcome is Outcome.BLOCKED, result.detail
    assert gate.pushes == [7.0]
