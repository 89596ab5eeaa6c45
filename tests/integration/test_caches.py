"""The Redis caches the README offers for PostgreSQL + Redis, on ./test's Redis.

census's one use of the cache there is the workers' ticker claim (Django-Q2's Redis broker
keeps its statistics in Redis itself); ``census.W003`` is the check that a cache is shared.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from census.checks import check_q_cluster
from census.maintenance import ticker

pytestmark = pytest.mark.any_database  # a cache on Redis, whatever the pass's database

REDIS_CACHES = {
    "django": {"BACKEND": "django.core.cache.backends.redis.RedisCache"},  # the README's
    # django-redis, which the README says serves too, as cookiecutter-django's production.py
    # configures it.
    "django-redis": {
        "BACKEND": "django_redis.cache.RedisCache",
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "IGNORE_EXCEPTIONS": True},
    },
}


def two_workers_claim(key: str) -> list[bool]:
    """``_take_turn`` from two threads at once: each has a cache client of its own, so they
    share only what the Redis server holds, as two workers on two hosts do."""
    claims: list[bool] = []
    ready = threading.Barrier(2)

    def worker() -> None:
        ready.wait()
        claims.append(ticker._take_turn(key, 1.0))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(claims)


@pytest.mark.parametrize("cache", REDIS_CACHES.values(), ids=REDIS_CACHES.keys())
def test_a_redis_cache_gives_each_tick_to_one_worker_and_passes_the_check(
    cache: dict[str, Any], settings: Any, monkeypatch: Any
) -> None:
    """On either backend, two workers asking for one tick: one gets it, and one gets the
    next; ``check`` says nothing of the cache (no ``census.W003``)."""
    settings.CACHES = {
        "default": {
            **cache,
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": f"census-caches-{uuid.uuid4().hex}",  # the Redis database is shared
        }
    }
    assert "census.W003" not in [message.id for message in check_q_cluster()]
    instant = datetime(2026, 12, 1, 12, 0, 0, 500000, tzinfo=UTC)
    monkeypatch.setattr(ticker.database, "clock", lambda using="default": instant)
    assert two_workers_claim("census:test-tick") == [False, True]
    instant += timedelta(seconds=1)
    assert two_workers_claim("census:test-tick") == [False, True]
