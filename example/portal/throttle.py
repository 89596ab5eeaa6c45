"""Sliding-window throttles counted in Django's cache: at most N hits per key in any W seconds.

One ``Rule`` per setting, each ``(N, W)`` or ``None`` (off):

- ``PORTAL_REFRESH_THROTTLE`` (default ``(10, 600)``): refresh requests per requester. Every
  request that reaches the throttle counts, whether or not it queued anything (a lookup in
  flight, a member the leader may not refresh).
- ``PORTAL_REGISTRATION_THROTTLE`` (default ``(10, 3600)``): registration POSTs per client
  address (``client_address``: ``REMOTE_ADDR``, an IPv6 address by its /64). Every POST
  counts, valid or not, so that invite codes cannot be guessed faster.
- ``PORTAL_REGISTRATION_THROTTLE_TOTAL`` (default ``(200, 3600)``): registration POSTs from
  everyone together.

A refused hit is not counted, so a key is let in again as soon as its oldest counted hit is
W seconds old. ``hit`` takes several counters at once and counts in all of them only when
every one has room (a registration refused for its address does not use up the total). The
count lives in Django's default cache under ``<rule's prefix>:<key>`` as the times of the
last N counted hits.

The read-modify-write runs in one database transaction: with the example's database cache on
SQLite (IMMEDIATE transactions) concurrent hits are counted one after the other. With another
cache backend two simultaneous hits may both be let in.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest


@dataclass(frozen=True, kw_only=True)
class Rule:
    #: The setting that holds ``(N, W)`` or ``None``.
    setting: str
    default: tuple[int, int]
    #: The cache keys' prefix.
    prefix: str


REFRESH = Rule(
    setting="PORTAL_REFRESH_THROTTLE", default=(10, 600), prefix="portal:refresh-throttle"
)
REGISTRATION = Rule(
    setting="PORTAL_REGISTRATION_THROTTLE",
    default=(10, 3600),
    prefix="portal:registration-throttle:address",
)
REGISTRATION_TOTAL = Rule(
    setting="PORTAL_REGISTRATION_THROTTLE_TOTAL",
    default=(200, 3600),
    prefix="portal:registration-throttle:total",
)
#: ``PORTAL_REFRESH_THROTTLE`` when the project does not set it: 10 requests per 10 minutes.
DEFAULT_THROTTLE = REFRESH.default
KEY_PREFIX = REFRESH.prefix


@dataclass(frozen=True, kw_only=True)
class Verdict:
    allowed: bool
    limit: int
    window: int
    #: Seconds until one more request would be let in; 0 when this one was.
    retry_after: int = 0
    #: The rule that refused (None when allowed).
    rule: Rule | None = None


def limits(rule: Rule = REFRESH) -> tuple[int, int] | None:
    """``(requests, seconds)`` from the rule's setting, or None when it is off."""
    value: Any = getattr(settings, rule.setting, rule.default)
    if value is None:
        return None
    try:
        requests, seconds = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"{rule.setting} must be (requests, seconds) or None, not {value!r}"
        ) from None
    if requests < 1 or seconds < 1:
        raise ImproperlyConfigured(
            f"{rule.setting} needs at least 1 request per at least 1 s, not {value!r}"
        )
    return requests, seconds


def client_address(request: HttpRequest) -> str:
    """Whom a registration is counted against: ``REMOTE_ADDR``, an IPv6 address by its /64
    (one subscriber usually has the whole /64).

    Behind a reverse proxy ``REMOTE_ADDR`` is the proxy's: with ``PORTAL_TRUST_X_FORWARDED_FOR``
    (the example sets it with ``PORTAL_HTTPS``) the address is the last one in
    ``X-Forwarded-For``, the one the proxy itself appended (the ones before it are whatever
    the client sent). A proxy that does not append to that header must not be trusted so.
    """
    address = request.META.get("REMOTE_ADDR") or ""
    if getattr(settings, "PORTAL_TRUST_X_FORWARDED_FOR", False):
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded[-1]:
            address = forwarded[-1]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _now() -> float:
    return time.time()


def hit(*counters: tuple[Rule, Any]) -> Verdict:
    """Count one hit on each ``(rule, key)`` unless one of them is over its limit; then
    nothing is counted and the verdict names the first rule that refused."""
    active = [(rule, key, config) for rule, key in counters if (config := limits(rule))]
    if not active:
        return Verdict(allowed=True, limit=0, window=0)
    with transaction.atomic():
        now = _now()
        windows = []
        for rule, key, (limit, window) in active:
            cache_key = f"{rule.prefix}:{key}"
            recent = [t for t in cache.get(cache_key, []) if now - t < window]
            if len(recent) >= limit:
                return Verdict(
                    allowed=False,
                    limit=limit,
                    window=window,
                    retry_after=max(1, math.ceil(min(recent) + window - now)),
                    rule=rule,
                )
            windows.append((cache_key, recent, window))
        for cache_key, recent, window in windows:
            cache.set(cache_key, [*recent, now], window)
    limit, window = active[0][2]
    return Verdict(allowed=True, limit=limit, window=window)
