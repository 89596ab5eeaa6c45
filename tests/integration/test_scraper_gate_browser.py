"""PlaywrightScraper and the gate in real Chromium: each sent request is recorded with its
fate; a submit held past its deadline is deferred."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from census.gate.protocol import Admission, Closed, Slot
from census.outcomes import Outcome
from census.scraper.playwright import PlaywrightScraper, ScraperConfig

# Test gates in memory, no database: one pass is enough.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.any_database]


class RecordingGate:
    """An open gate that remembers what each request's answer was."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.sends = 0

    def peek(self, within: float) -> Closed | None:
        return None

    def wait_turn(
        self, within: float | None = None, sleep: Callable[[float], None] | None = None
    ) -> Admission:
        return Slot(timezone.now())

    def sent(self, slot: Slot, *, left: bool = True) -> None:
        self.sends += 1

    def record(self, slot: Slot, **outcome: Any) -> float | None:
        self.records.append(outcome)
        return None


@pytest.mark.parametrize(
    ("cedula", "blocked", "answered", "retry_after", "unexpected"),
    [
        ("4000000001", True, False, None, ""),  # F5 block page: the gate picks the pause
        ("4200000001", True, False, 10.0, ""),  # 429 with Retry-After: 10
        ("1000000001", False, True, None, ""),  # found
        ("6300000001", False, False, None, "consulta:not_json"),  # truncated JSON
    ],
)
def test_each_sent_request_is_recorded_with_its_fate(
    census_site: Any,
    cedula: str,
    blocked: bool,
    answered: bool,
    retry_after: float | None,
    unexpected: str,
) -> None:
    """Blocks, answers and answers in no known shape (with their signature) reach the gate
    once, so the breaker can open or close."""
    gate = RecordingGate()
    config = ScraperConfig(site_url=census_site.url, timeout=20)
    result = PlaywrightScraper(gate=gate, config=config).lookup(cedula)
    assert result.meta["sent"] is True, result.detail
    assert gate.records == [
        {
            "blocked": blocked,
            "answered": answered,
            "retry_after": retry_after,
            "unexpected": unexpected,
        }
    ]
    assert gate.sends == 1  # the send was confirmed to the gate
    assert len(census_site.consultas()) == 1


class LateClosedGate(RecordingGate):
    """Open at launch; at the submit it holds the request until past the deadline, then refuses."""

    def wait_turn(
        self, within: float | None = None, sleep: Callable[[float], None] | None = None
    ) -> Admission:
        assert within is not None
        time.sleep(max(within, 0) + 1.5)
        return Closed(timezone.now() + timedelta(seconds=30), "probe_in_flight", wait=30.0)


def test_a_submit_held_at_the_gate_past_its_deadline_is_deferred(census_site: Any) -> None:
    """The consulta waits at the gate past the lookup's deadline: deferred, nothing sent."""
    gate = LateClosedGate()
    # Long enough for a loaded machine to reach the submit, where the gate holds it.
    config = ScraperConfig(site_url=census_site.url, timeout=30)
    result = PlaywrightScraper(gate=gate, config=config).lookup("1000000002")
    assert result.outcome is Outcome.DEFERRED, result.detail
    assert result.meta["sent"] is False
    assert census_site.consultas() == []
    assert gate.records == []
