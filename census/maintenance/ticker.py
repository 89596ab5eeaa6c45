"""Punctual retries and lost-attempt recovery, run inside every qcluster worker.

Django-Q2's scheduler ticks every 30 s in the sentinel, so a retry due in 60 s can start at
90 s. Each worker therefore starts a daemon thread (on Django-Q2's ``post_spawn``) that runs
``django_q.scheduler.scheduler()`` every ``CENSUS_SCHEDULER_TICK`` seconds; a cache key lets
one worker of those sharing the cache run it per tick. A schedule fired twice is harmless: the
second task finds its attempt no longer current. The same thread runs the sweeper now and then,
and prunes old task rows hourly (``census.maintenance.upkeep``).

The thread lives in workers, never in the qcluster parent; it does ORM work only, no browser.
With a solving service configured, each worker also runs the captcha token pool's thread
(``census.captcha.filler``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import close_old_connections
from django_q.scheduler import scheduler
from django_q.signals import post_spawn

from census import database, events
from census.captcha import filler
from census.conf import settings
from census.events import Event
from census.maintenance import sweeper, upkeep

# Full sweeps (stuck and stalled lookups; the stalled pass reads the queue) come every
# CENSUS_SWEEP_SECONDS.
#: Seconds between looks for reports whose hook never concluded them (one small query).
REPORTED_EVERY = 5.0
_TICK_KEY = "census:scheduler-tick"
_SWEEP_KEY = "census:sweep"
_REPORTED_KEY = "census:sweep-reported"
#: Seconds between prunings of census's old task rows (census.maintenance.upkeep).
PRUNE_EVERY = 3600  # an hour
_PRUNE_KEY = "census:prune-tasks"


def _take_turn(key: str, seconds: float) -> bool:
    """True for the one caller (per shared cache) that claims the current ``seconds`` window.

    The key names the window rather than expiring after ``seconds``: Django's database cache
    keeps expiry times in whole seconds, which would stretch a 1 s tick to up to 2 s. The
    window is read from the database's clock, which every host shares: by their own clocks
    two hosts seconds apart would name different windows at the same instant, and both run.
    """
    try:
        now = database.clock().timestamp()
    except Exception:  # the database is away: this host's clock will do for one tick
        now = time.time()
    window = int(now / seconds)
    try:
        added = cache.add(f"{key}:{window}", os.getpid(), timeout=max(2 * seconds, 2))
    except Exception:  # a cache outage must not stop retries: run anyway
        return True
    # django-redis with IGNORE_EXCEPTIONS answers None for an outage it swallowed: the same.
    return added is None or bool(added)


def tick() -> None:
    """One round: fire due schedules, and sweep when it is time."""
    if _take_turn(_TICK_KEY, settings.scheduler_tick):
        scheduler()
    if _take_turn(_SWEEP_KEY, settings.sweep_seconds):
        sweeper.sweep()
    elif _take_turn(_REPORTED_KEY, REPORTED_EVERY):
        sweeper.sweep_reported()
    elif _take_turn(_PRUNE_KEY, PRUNE_EVERY):
        upkeep.prune()


def _run(interval: float, work: Callable[[], object], failed: Event) -> None:
    """Run ``work`` every ``interval`` seconds, forever; a failed round emits ``failed``."""
    while True:
        started = time.monotonic()
        try:
            work()
        except Exception:
            events.emit(failed)
        finally:
            close_old_connections()
        time.sleep(max(interval - (time.monotonic() - started), 0.05))


def _thread(name: str, *args: object) -> None:
    threading.Thread(target=_run, args=args, name=name, daemon=True).start()


def start_in_worker(sender: Any = None, proc_name: str = "", **kwargs: Any) -> None:
    from census import bulk

    try:  # the re-check schedule follows the settings this cluster was started with
        bulk.sync_recheck_schedule()
    except Exception:
        events.emit(Event.SCHEDULER_TICK_FAILED)
    finally:
        close_old_connections()
    interval = settings.scheduler_tick
    if interval <= 0:
        return
    _thread("census-ticker", interval, tick, Event.SCHEDULER_TICK_FAILED)
    if settings.captcha is not None:
        # The captcha token pool keeps its own thread: a stalled solving service must not
        # delay a retry's schedule.
        _thread("census-captcha-pool", filler.ROUND_SECONDS, filler.fill, Event.CAPTCHA_POOL_FAILED)


def connect() -> None:
    post_spawn.connect(start_in_worker, dispatch_uid="census.maintenance.ticker")
