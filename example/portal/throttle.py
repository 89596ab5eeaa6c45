"""At most N refresh requests per requester in any window of W seconds, counted in the cache.

``PORTAL_REFRESH_THROTTLE = (N, W)`` (default ``(10, 600)``: 10 per 10 minutes; ``None``
turns the throttle off). Every request that reaches the throttle counts, whether or not it
queued anything (a lookup in flight, a member the leader may not refresh); a refused request
does not, so a leader is let in again as soon as their oldest counted request is W seconds
old. The count lives in Django's default cache under ``portal:refresh-throttle:<user id>``
as the times of the last N counted requests (a sliding window).

The read-modify-write runs in one database transaction: with the example's database cache on
SQLite (IMMEDIATE transactions) concurrent requests of one leader are counted one after the
other. With another cache backend two simultaneous requests may both be let in.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

#: ``PORTAL_REFRESH_THROTTLE`` when the project does not set it: 10 requests per 10 minutes.
DEFAULT_THROTTLE = (10, 600)
KEY_PREFIX = "portal:refresh-throttle"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    allowed: bool
    limit: int
    window: int
    #: Seconds until one more request would be let in; 0 when this one was.
    retry_after: int = 0


def limits() -> tuple[int, int] | None:
    """``(requests, seconds)`` from ``PORTAL_REFRESH_THROTTLE``, or None when it is off."""
    value: Any = getattr(settings, "PORTAL_REFRESH_THROTTLE", DEFAULT_THROTTLE)
    if value is None:
        return None
    try:
        requests, seconds = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"PORTAL_REFRESH_THROTTLE must be (requests, seconds) or None, not {value!r}"
        ) from None
    if requests < 1 or seconds < 1:
        raise ImproperlyConfigured(
            f"PORTAL_REFRESH_THROTTLE needs at least 1 request per at least 1 s, not {value!r}"
        )
    return requests, seconds


def _now() -> float:
    return time.time()


def hit(user_id: Any) -> Verdict:
    """Count one refresh request by ``user_id`` unless it is over the limit."""
    config = limits()
    if config is None:
        return Verdict(allowed=True, limit=0, window=0)
    limit, window = config
    key = f"{KEY_PREFIX}:{user_id}"
    with transaction.atomic():
        now = _now()
        recent = [t for t in cache.get(key, []) if now - t < window]
        if len(recent) >= limit:
            oldest = min(recent)
            return Verdict(
                allowed=False,
                limit=limit,
                window=window,
                retry_after=max(1, math.ceil(oldest + window - now)),
            )
        cache.set(key, [*recent, now], window)
    return Verdict(allowed=True, limit=limit, window=window)
