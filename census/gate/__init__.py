"""The cluster-wide gate in front of the census site: one request per
``CENSUS_RATE_LIMIT_SECONDS`` across every worker and host, a breaker that waits out the
site's blocks and changes, and the operator's pause switch.

- ``protocol``: what a scraper sees (``Gate``, ``Slot``, ``Closed``, ``OpenGate``);
- ``rules``: the pure decisions (a state and a clock value in, a decision and a state out);
- ``store``: the shared ``RateGate`` row, its lock and the database's clock;
- ``waiter``: ``GateWaiter``, the ``Gate`` census's tasks hand the scraper;
- ``pause``: the operator's switch (``census_pause`` / ``census_resume``).

The scraper-facing names are importable from here.
"""

from __future__ import annotations

from typing import Any

from census.compat import moved
from census.gate.protocol import Admission, Closed, Gate, OpenGate, Slot

__all__ = ["Admission", "Closed", "Gate", "OpenGate", "Slot"]


def __getattr__(name: str) -> Any:
    """Before 0.2.0 ``census.gate`` was the rules' module: its names still resolve, with a
    warning (``census.compat``)."""
    from census.gate import rules

    if name.startswith("_") or not hasattr(rules, name):
        raise AttributeError(f"module 'census.gate' has no attribute {name!r}")
    moved(f"census.gate.{name}", f"census.gate.rules.{name}")
    return getattr(rules, name)
