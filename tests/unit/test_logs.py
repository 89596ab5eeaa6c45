"""census.logs: the cédulas in scope are masked in structlog events and in standard-library
records, tracebacks and stacks included; nothing is masked out of scope."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

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
