"""The bounds on waits that come from outside, defined once, and the one way to apply them.

``Retry-After`` (a 429's header, or the closed gate's own wait) is clamped with
``clamp_seconds`` where a value enters census: the parser (the site's header), the gate
(a block a scraper records) and the attempt report (any scraper's answer). Everything
after those trusts the value. Pure: no Django (the scraper imports it).
"""

from __future__ import annotations

import math

#: Longest wait any ``Retry-After`` may impose, whatever its form: the default of
#: ``CENSUS_MAX_RETRY_AFTER_SECONDS``.
MAX_RETRY_AFTER_SECONDS = 3600.0
#: A lookup deferred (the gate closed) longer than this in total ends in ``error``
#: (``blocked``): the default of ``CENSUS_MAX_DEFER_SECONDS``.
MAX_DEFER_SECONDS = 86400.0
#: Longest wait a deferral (the gate's own: a breaker open for a probe period, a place in
#: line) may report: only makes an infinite one finite. Whether the lookup waits that long
#: is the deferral bound's call (``CENSUS_MAX_DEFER_SECONDS``), not this ceiling's.
MAX_GATE_WAIT_SECONDS = 10 * MAX_DEFER_SECONDS


def clamp_seconds(value: float | None, maximum: float) -> float:
    """``value`` as a finite number of seconds in ``[0, maximum]`` (None, NaN -> 0; an
    infinite or NaN ``maximum`` -> ``MAX_RETRY_AFTER_SECONDS``)."""
    ceiling = max(float(maximum), 0.0) if math.isfinite(maximum) else MAX_RETRY_AFTER_SECONDS
    if value is None or math.isnan(value):
        return 0.0
    return min(max(float(value), 0.0), ceiling)
