"""census.events: one vocabulary; the enum and the code agree (the docs: test_event_docs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog

from census import events
from census.events import Event

ROOT = Path(__file__).resolve().parents[2]
#: A logging call whose first argument is a string literal: what an event emitted past the
#: enum would look like.
_LITERAL_EVENT = re.compile(
    r"\.(?:debug|info|warning|error|exception|critical|msg)\(\s*[\"'][a-z]+(?:_[a-z]+)+[\"']"
)


def test_no_event_is_emitted_past_the_enum() -> None:
    """No module of census/ logs an event named by a string literal instead of an Event."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "census").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _LITERAL_EVENT.search(line)
    ]
    assert offenders == []


def test_only_the_events_module_holds_a_logger() -> None:
    """Every emission goes through census.events (no private structlog loggers)."""
    holders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "census").rglob("*.py")
        if "get_logger(" in path.read_text() and path.name != "events.py"
    ]
    assert holders == []


@pytest.mark.parametrize("event", list(Event))
def test_emit_logs_at_the_event_level(event: Event) -> None:
    """emit() uses each event's level; error events carry the exception being handled."""
    with structlog.testing.capture_logs() as logs:
        try:
            raise ValueError("boom")
        except ValueError:
            events.emit(event, lookup_id=1)
    [entry] = logs
    assert entry["event"] == event.value and entry["log_level"] == event.level
    assert ("exc_info" in entry) == (event.level == "error")


def test_lines_about_a_lookup_name_it_and_later_lines_do_not() -> None:
    """``events.about``: inside, every line carries ``lookup_id`` and ``attempt``; after it
    (even after an error), the worker's lines are about nothing, and an outer binding is
    back."""
    from structlog.testing import capture_logs

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        with events.about(7, 1):
            events.emit(Event.ATTEMPT_IGNORED, reason="outer")
            with pytest.raises(RuntimeError), events.about(8, 2):
                events.emit(Event.ATTEMPT_IGNORED, reason="inner")
                raise RuntimeError
            events.emit(Event.ATTEMPT_IGNORED, reason="outer again")
        events.emit(Event.ATTEMPT_IGNORED, reason="after")
    ids = [(e["reason"], e.get("lookup_id"), e.get("step")) for e in logs]
    assert ids == [
        ("outer", 7, 1),
        ("inner", 8, 2),
        ("outer again", 7, 1),
        ("after", None, None),
    ]
