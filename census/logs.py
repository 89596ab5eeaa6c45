"""census's events in the project's logging, and no cédula in what a project logs.

census emits structlog events (logger ``census``). A project that configures structlog
itself keeps its set-up. One that does not gets census's events through Django's
``LOGGING`` as ``key=value`` lines (``CensusConfig.ready`` calls ``configure_structlog``
then), never structlog's own console output beside it. For JSON or coloured lines, call
``configure_structlog()`` in the settings and give ``LOGGING`` a ``formatter("json")`` or
``formatter("console")`` (docs/observability.md has the snippet).

No cédula, with a structlog processor and a ``logging`` filter:

census masks cédulas in its own event fields; a traceback is another matter (a ``KeyError``
may carry the number, and so may an exception raised by portal code that census runs: a
follow-up, a signal receiver). While census runs code for a lookup it declares that lookup's
cédula in scope (``scrubbing``); both tools below mask every echo of the cédulas in scope
(``census.cedula.scrub``: plain, with separators, with leading zeros) in what is logged in
that scope, census's events and other libraries' lines alike.

- structlog: put ``scrub_cedula`` in your chain before the renderer, and in a
  ``ProcessorFormatter``'s ``foreign_pre_chain`` for the standard-library lines it renders::

      structlog.configure(processors=[..., census.logs.scrub_cedula, JSONRenderer()])

  It renders ``exc_info`` into an ``exception`` string itself (so it may stand before or
  after ``format_exc_info``) and masks every string field.
- ``logging`` with Django's plain formatters: put ``ScrubCedulaFilter`` on every handler
  (a handler's filters see every record that reaches it, propagated ones included)::

      "filters": {"census": {"()": "census.logs.ScrubCedulaFilter"}},
      "handlers": {"console": {..., "filters": ["census"]}},
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from census.cedula import scrub

_in_scope: ContextVar[tuple[str, ...]] = ContextVar("census_cedulas_in_scope", default=())


@contextmanager
def scrubbing(*cedulas: str) -> Iterator[None]:
    """While inside, ``scrub_cedula`` and ``ScrubCedulaFilter`` mask these cédulas."""
    token = _in_scope.set(_in_scope.get() + tuple(c for c in cedulas if c))
    try:
        yield
    finally:
        _in_scope.reset(token)


def scrub_in_scope(text: str) -> str:
    """``text`` with every cédula in scope masked."""
    for cedula in _in_scope.get():
        text = scrub(text, cedula)
    return text


def _render(exc_info: Any) -> str:
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        return "".join(traceback.format_exception(exc_info))
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        return "".join(traceback.format_exception(*exc_info))
    return ""


def scrub_cedula(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: render ``exc_info``, then mask the cédulas in scope everywhere."""
    if "exc_info" in event_dict:
        rendered = _render(event_dict.pop("exc_info"))
        if rendered:
            event_dict["exception"] = rendered
    if _in_scope.get():
        for key, value in list(event_dict.items()):
            if isinstance(value, str):
                event_dict[key] = scrub_in_scope(value)
    return event_dict


class ScrubCedulaFilter(logging.Filter):
    """A ``logging`` filter for handlers: masks the cédulas in scope in a record's message,
    its arguments, its traceback and its stack; never drops a record.

    The message is rendered (``getMessage``) and its arguments cleared; the traceback is
    rendered into ``exc_text``, which ``logging.Formatter`` prints instead of rendering
    ``exc_info`` again. A record that structlog wrapped for a ``ProcessorFormatter`` (its
    message is the event dict) has its string fields masked.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _in_scope.get():
            return True
        if isinstance(record.msg, dict):
            record.msg = {
                key: scrub_in_scope(value) if isinstance(value, str) else value
                for key, value in record.msg.items()
            }
            return True
        record.msg, record.args = scrub_in_scope(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _render(record.exc_info).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub_in_scope(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_in_scope(record.stack_info)
        return True


# -- routing structlog through Django's LOGGING ------------------------------------------------

#: Run on every line before it is rendered: census's events and other libraries' records.
PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_structlog(*, plain: bool = False) -> None:
    """Send structlog's events to the standard library's loggers (so to ``LOGGING``'s
    handlers), cédulas masked.

    ``plain``: render each event as one ``key=value`` string, for handlers with Django's
    plain formatters; else hand the event over for a ``formatter(...)`` to render."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        scrub_cedula,  # tracebacks rendered here and masked: a KeyError may carry a cédula
    ]
    if plain:
        processors.append(structlog.processors.KeyValueRenderer(key_order=["event"]))
    else:
        processors[:2] = PRE_CHAIN
        processors.append(structlog.stdlib.ProcessorFormatter.wrap_for_formatter)
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a project (or a test) that configures structlog later is obeyed by
        # loggers already used.
        cache_logger_on_first_use=False,
    )


#: ``formatter``'s renderers.
RENDERERS = ("json", "console", "keyvalue")


def formatter(renderer: str = "json") -> dict[str, Any]:
    """A ``LOGGING["formatters"]`` entry rendering structlog's events and every other
    library's records alike (``json``, ``console`` or ``keyvalue``), cédulas masked."""
    renderers: dict[str, Any] = {
        "json": structlog.processors.JSONRenderer(ensure_ascii=False),
        "console": structlog.dev.ConsoleRenderer(colors=False),
        "keyvalue": structlog.processors.KeyValueRenderer(key_order=["timestamp", "event"]),
    }
    if renderer not in renderers:
        raise ValueError(f"renderer must be one of {', '.join(RENDERERS)}; got {renderer!r}")
    last: list[Any] = [renderer == "json" and structlog.processors.dict_tracebacks]
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [*PRE_CHAIN, scrub_cedula],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            scrub_cedula,  # every line, whatever chain built the event
            *[p for p in last if p],
            renderers[renderer],
        ],
    }
