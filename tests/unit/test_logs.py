"""census.logs: the cédulas in scope are masked in structlog events and in standard-library
records, tracebacks and stacks included; nothing is masked out of scope."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from census import logs
from census.cedula import mask
from census.logs import ScrubCedulaFilter, scrub_cedula, scrubbing

CEDULA = "1234567890"
MASKED = mask(CEDULA)


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler (a plain ``logging.Formatter``) carries the filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ScrubCedulaFilter())
    logger = logging.getLogger("tests.logs.portal")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    logger.propagate = True


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ("member %s rejected", (CEDULA,)),
        ("member %s rejected", ("1.234.567.890",)),
        ("member %(id)s rejected", ({"id": int(CEDULA)},)),
        (f"member {CEDULA} rejected", ()),
    ],
)
def test_the_filter_masks_messages_and_their_arguments(
    stream: tuple[logging.Logger, io.StringIO], message: str, args: tuple[object, ...]
) -> None:
    """However the message carries the number (argument, mapping, literal, dotted)."""
    logger, out = stream
    with scrubbing(CEDULA):
        logger.warning(message, *args)
    assert out.getvalue() == f"member {MASKED} rejected\n"


def test_the_filter_masks_tracebacks_and_stacks(
    stream: tuple[logging.Logger, io.StringIO],
) -> None:
    """``exc_info`` and ``stack_info`` are rendered masked; the traceback's lines stay."""
    logger, out = stream
    with scrubbing(CEDULA):
        try:
            raise KeyError(CEDULA)
        except KeyError:
            logger.exception("lookup failed", stack_info=True)
    text = out.getvalue()
    assert CEDULA not in text
    assert f"KeyError: '{MASKED}'" in text and "Traceback (most recent call last)" in text
    assert "Stack (most recent call last)" in text


def test_the_filter_leaves_records_out_of_scope_alone(
    stream: tuple[logging.Logger, io.StringIO],
) -> None:
    """Outside ``scrubbing`` there is nothing to mask: a long number is not a cédula."""
    logger, out = stream
    logger.warning("order %s shipped", CEDULA)
    assert out.getvalue() == f"order {CEDULA} shipped\n"


def test_the_filter_masks_structlog_event_dicts() -> None:
    """A record structlog wrapped for a ProcessorFormatter carries its event dict."""
    record = logging.LogRecord("census", logging.INFO, __file__, 1, {}, None, None)
    record.msg = {"event": "follow_up_failed", "error": f"rejected {CEDULA}", "try": 1}
    with scrubbing(CEDULA):
        assert ScrubCedulaFilter().filter(record)
    assert record.msg == {"event": "follow_up_failed", "error": f"rejected {MASKED}", "try": 1}


def test_the_processor_renders_and_masks_the_exception() -> None:
    """``scrub_cedula`` turns ``exc_info`` into a masked ``exception`` string."""
    try:
        raise RuntimeError(f"CRM rejected member {CEDULA}")
    except RuntimeError as error:
        with scrubbing(CEDULA):
            event = scrub_cedula(None, "error", {"event": "x", "exc_info": error})
    assert f"RuntimeError: CRM rejected member {MASKED}" in event["exception"]
    assert CEDULA not in event["exception"]


_UNCONFIGURED = r"""
import django
django.setup()  # tests.settings configures no structlog without CENSUS_JSON_LOG
from census import events, logs
from census.events import Event
with logs.scrubbing("1023456789"):
    events.emit(Event.SWEEP_FAILED, detail="cedula 1023456789 was here")
    events.emit(Event.LOOKUP_RESUMED, lookup_id=7)
print("END", flush=True)
"""


def test_an_unconfigured_structlog_sends_census_events_through_logging() -> None:
    """A project that never configured structlog: census's events reach its LOGGING's
    handlers (the root's StreamHandler on stderr here) as key=value lines, the cédula
    masked, and nothing of structlog's own console output reaches stdout."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CENSUS_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    env.pop("CENSUS_JSON_LOG", None)
    done = subprocess.run(
        [sys.executable, "-c", _UNCONFIGURED], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "END"
    lines = [line for line in done.stderr.splitlines() if line.startswith("event=")]
    assert lines[0].startswith("event='sweep_failed'"), done.stderr[-2000:]
    assert mask("1023456789") in lines[0] and "1023456789" not in done.stderr
    assert lines[1].startswith("event='lookup_resumed'") and "lookup_id=7" in lines[1]


def _wrapped(event_dict: dict[str, object]) -> logging.LogRecord:
    """A record as structlog's ``wrap_for_formatter`` hands it to a ProcessorFormatter."""
    record = logging.LogRecord("census", logging.INFO, __file__, 1, event_dict, (), None)
    record._logger = structlog.get_logger()  # type: ignore[attr-defined]
    record._name = "info"  # type: ignore[attr-defined]
    return record


@pytest.mark.parametrize("renderer", ["json", "console", "keyvalue"])
def test_the_shipped_formatter_renders_events_and_records_alike(renderer: str) -> None:
    """``census.logs.formatter`` renders a structlog event and another library's plain
    record with one chain, the cédulas in scope masked in both."""
    config = logs.formatter(renderer)
    formatter = config.pop("()")(**config)
    plain = logging.LogRecord(
        "django-q", logging.INFO, __file__, 1, "task %s", ("1023456789",), None
    )
    event = _wrapped({"event": "lookup_resumed", "detail": "1023456789"})
    with scrubbing("1023456789"):
        rendered = [formatter.format(plain), formatter.format(event)]
    assert all("1023456789" not in line and mask("1023456789") in line for line in rendered)
    if renderer == "json":
        events = [json.loads(line) for line in rendered]
        assert [e["event"] for e in events] == [f"task {mask('1023456789')}", "lookup_resumed"]
        assert events[0]["logger"] == "django-q"


def test_an_unknown_renderer_is_refused() -> None:
    """formatter("xml"): a clear error naming the renderers."""
    with pytest.raises(ValueError, match="renderer must be one of json, console, keyvalue"):
        logs.formatter("xml")
