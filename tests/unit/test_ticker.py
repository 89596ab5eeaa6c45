"""The in-worker ticker's per-window claim (one caller per window, cluster-wide)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from census.maintenance import ticker


def test_the_tick_window_comes_from_the_database_clock(monkeypatch: Any, settings: Any) -> None:
    """Two hosts 0.6 s apart ask at one instant: one window, one claim (by their own clocks
    they would name two windows and both run the scheduler)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    instant = datetime(2026, 12, 1, 12, 0, 0, 900000, tzinfo=UTC)
    monkeypatch.setattr(ticker.database, "clock", lambda using="default": instant)
    key = f"census:test-tick-{id(instant)}"
    monkeypatch.setattr(ticker.time, "time", lambda: instant.timestamp())  # host A
    first = ticker._take_turn(key, 1.0)
    monkeypatch.setattr(ticker.time, "time", lambda: instant.timestamp() + 0.6)  # host B
    second = ticker._take_turn(key, 1.0)
    assert (first, second) == (True, False)


class _SwallowingCache:
    """django-redis with IGNORE_EXCEPTIONS while Redis is down: ``add`` answers None."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_a_cache_that_swallows_its_outage_still_lets_the_ticker_run(monkeypatch: Any) -> None:
    """A None from cache.add is an outage the backend hid, not another worker's turn: every
    worker runs the scheduler (a second run is harmless), so retries do not stop."""
    monkeypatch.setattr(ticker, "cache", _SwallowingCache())
    assert ticker._take_turn("census:test-swallowed", 1.0) is True
