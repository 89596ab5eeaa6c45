"""PlaywrightScraper and the gate: a closed gate costs no browser, and answers are recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from census.gate.protocol import Admission, Closed, Slot
from census.outcomes import Outcome
from census.scraper.playwright import PlaywrightScraper, ScraperConfig


class ClosedGate:
    """A gate whose breaker a block opened 100 s ago... for another 100 s."""

    def __init__(self) -> None:
        self.opens = timezone.now() + timedelta(seconds=100)
        self.turns = 0

    def peek(self, within: float) -> Closed | None:
        return Closed(self.opens, "breaker_open", wait=100.0)

    def wait_turn(
        self, within: float | None = None, sleep: Callable[[float], None] | None = None
    ) -> Admission:
        self.turns += 1
        return Closed(self.opens, "breaker_open", wait=100.0)

    def sent(self, slot: Slot, *, left: bool = True) -> None:
        raise AssertionError("nothing may be sent")

    def record(self, slot: Slot, **outcome: Any) -> None:
        raise AssertionError("nothing was sent, so nothing may be recorded")


def test_closed_gate_defers_without_a_browser_and_says_when_it_opens(census_site: Any) -> None:
    """A closed gate: no request, a deferred outcome, retry_after ~100 s, reason in detail."""
    gate = ClosedGate()
    config = ScraperConfig(site_url=census_site.url, timeout=10)
    result = PlaywrightScraper(gate=gate, config=config).lookup("1012345678")
    assert result.outcome is Outcome.DEFERRED
    assert result.retry_after is not None and 95 < result.retry_after <= 100
    assert result.detail.startswith("breaker_open")
    assert result.meta["sent"] is False
    assert census_site.access_log == []
    assert gate.turns == 0


def test_a_click_timeout_after_the_gate_refused_is_a_deferral() -> None:
    """Under load the submit click can time out after the gate refused: still nothing sent."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    from census.gate.protocol import OpenGate
    from census.scraper.playwright import LookupBudget, _Flow, deferred

    budget = LookupBudget.start(
        ScraperConfig(site_url="http://127.0.0.1:9/", timeout=5), OpenGate()
    )
    flow = _Flow(page=None, cedula="1000000002", budget=budget)  # type: ignore[arg-type]
    flow.stage = "rate_gate"
    flow.gate_answer = deferred(Closed(timezone.now() + timedelta(seconds=9), "rate_backlog"))
    result = flow._timed_out(PlaywrightTimeoutError("Locator.click: Timeout 163ms exceeded."))
    assert result.outcome is Outcome.DEFERRED
    assert result.detail.startswith("rate_backlog")
