"""A structlog processor for projects using census: no cédula in what they log.

census masks cédulas in its own event fields; a traceback is another matter (a ``KeyError``
may carry the number). Put ``scrub_cedula`` in your structlog chain, before the renderer::

    structlog.configure(processors=[..., census.logs.scrub_cedula, JSONRenderer()])

It renders ``exc_info`` into an ``exception`` string itself (so it may stand before or after
``format_exc_info``) and masks, in every string field, the cédulas that census code declared
in scope with ``scrubbing()`` while it logs.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from census.cedula import scrub

_in_scope: ContextVar[tuple[str, ...]] = ContextVar("census_cedulas_in_scope", default=())


@contextmanager
def scrubbing(*cedulas: str) -> Iterator[None]:
    """While inside, ``scrub_cedula`` masks these cédulas in every event."""
    token = _in_scope.set(_in_scope.get() + tuple(c for c in cedulas if c))
    try:
        yield
    finally:
        _in_scope.reset(token)


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
    for cedula in _in_scope.get():
        for key, value in list(event_dict.items()):
            if isinstance(value, str):
                event_dict[key] = scrub(value, cedula)
    return event_dict
