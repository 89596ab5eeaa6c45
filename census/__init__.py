"""Background lookup of members' cédulas in Colombia's electoral census, on Django-Q2.

The public names, importable from ``census`` (those that need Django's app registry are
loaded on first access)::

    from census import Attempt, CedulaInfo, Event, Outcome, Status, mark_verified, request_refresh
"""

from __future__ import annotations

from typing import Any

from census import compat
from census.events import Event
from census.outcomes import Outcome

compat.install()  # the paths of modules that moved keep working, with a warning

__version__ = "0.2.0"

__all__ = [
    "Attempt",
    "CedulaInfo",
    "Event",
    "Outcome",
    "Status",
    "mark_verified",
    "request_refresh",
]

_LAZY = {
    "Attempt": "census.models",
    "CedulaInfo": "census.models",
    "Status": "census.models",
    "request_refresh": "census.lookup.refresh",
    "mark_verified": "census.lookup.capacity",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'census' has no attribute {name!r}")
