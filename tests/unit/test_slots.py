"""Host-wide browser slots (census.scraper.slots) and what the pipeline makes of waiting."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from census.outcomes import Outcome, is_own_slowness
from census.scraper.slots import NoBrowserSlot, browser_slot


def test_no_more_browsers_than_slots(tmp_path: Path) -> None:
    """Two slots: a third holder waits, and is refused when none frees up in time."""
    with (
        browser_slot(2, 1.0, str(tmp_path)) as first,
        browser_slot(2, 1.0, str(tmp_path)) as second,
    ):
        assert {first, second} == {0, 1}
        with pytest.raises(NoBrowserSlot), browser_slot(2, 0.3, str(tmp_path)):
            pass
    with browser_slot(2, 0.3, str(tmp_path)) as again:  # both released
        assert again in (0, 1)


_HOLDER = """
import sys, time
from census.scraper.slots import browser_slot
with browser_slot(1, 5.0, sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    """The kernel drops a killed process's lock: a SIGKILLed worker never leaks a browser."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(NoBrowserSlot), browser_slot(1, 0.3, str(tmp_path)):
            pass
        holder.kill()
        holder.wait()
        with browser_slot(1, 5.0, str(tmp_path)) as number:
            assert number == 0
    finally:
        holder.kill()
        holder.wait()


def test_waiting_for_a_slot_does_not_start_the_lookups_clock(tmp_path: Path) -> None:
    """A lookup's budget starts once it holds a browser: the wait is not spent from it."""
    from census.gate.protocol import OpenGate
    from census.scraper.playwright import PlaywrightScraper, ScraperConfig

    config = ScraperConfig(
        site_url="http://127.0.0.1:9/",
        timeout=5,
        browsers_per_host=1,
        browser_wait=0.3,
        slots_dir=str(tmp_path),
    )
    with browser_slot(1, 1.0, str(tmp_path)):
        started = time.monotonic()
        result = PlaywrightScraper(gate=OpenGate(), config=config).lookup("1000000001")
    assert time.monotonic() - started >= 0.3
    assert result.outcome is Outcome.DEFERRED and result.meta["sent"] is False
    assert result.detail.startswith("browsers_busy") and is_own_slowness(result.detail)
    assert result.retry_after == pytest.approx(5.0)


def _report_own_slowness(info: Any, number: int) -> None:
    """Play one attempt that ran out of time typing (nothing sent), reported on its row."""
    from census.lookup.status import locked, transition
    from census.models import Attempt
    from census.models import Status as S

    with locked(info.pk) as row:
        assert row is not None
        transition(row, S.SCRAPING, step=number)
    Attempt.objects.create(
        lookup_id=info.pk,
        step=number,
        outcome=Outcome.DEFERRED.value,
        error="browser_slow: stage fill: TimeoutError: Locator.press_sequentially: Timeout",
        retry_after=5.0,
        finished_at=timezone.now(),
    )


@pytest.mark.django_db
def test_own_slowness_is_not_charged_and_stays_off_the_cursor(
    new_lookup: Any, settings: Any
) -> None:
    """A browser_slow deferral keeps the budget and takes no place on the gate's cursor;
    past max_attempts of them in one budget the lookup is charged after all (bounded)."""
    from census.lookup.conclude import conclude_attempt
    from census.models import CedulaInfo, RateGate, Status

    settings.CENSUS_MAX_ATTEMPTS = 2
    info = new_lookup("found")
    for number in (1, 2):
        _report_own_slowness(info, number)
        assert conclude_attempt(info.pk, number)
        info = CedulaInfo.objects.get(pk=info.pk)
        assert (info.status, info.retry_count, info.step) == (Status.RETRYING, 0, number + 1)
        assert info.next_attempt_at is not None
        wait = (info.next_attempt_at - timezone.now()).total_seconds()
        assert 3.0 < wait <= 5.0
    assert not RateGate.objects.filter(defer_cursor__isnull=False).exists()
    _report_own_slowness(info, 3)  # a third in a budget of two attempts: charged
    assert conclude_attempt(info.pk, 3)
    info = CedulaInfo.objects.get(pk=info.pk)
    assert (info.status, info.retry_count) == (Status.RETRYING, 1)
