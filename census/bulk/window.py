"""The bulk window: how many lookups it may hold (what the gate serves in
``CENSUS_BULK_WINDOW_SECONDS``, and no more than the cluster finishes in it), how many it
holds now, and whether the gate lets a feeder add any. Reads only; ``census.bulk.feeder``
fills it."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from census.conf import settings
from census.gate.rules import GateState
from census.gate.store import GateStore
from census.gate.waiter import DEFAULT_NAME as GATE_NAME
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome

IN_FLIGHT_VALUES = (Status.PENDING.value, Status.SCRAPING.value, Status.RETRYING.value)


#: Attempts that finished within this many seconds (or the window, if longer) measure what
#: the cluster gets through: long enough to hold several lookups of a slow host.
THROUGHPUT_LOOKBACK_SECONDS = 60.0


def window_size(
    *, window_s: float, gate_capacity: int, finished: int, lookback_s: float, workers: int
) -> int:
    """Lookups the bulk window may hold: what the gate serves in it, and no more than the
    cluster finishes in it (``finished`` attempts in the last ``lookback_s``, scaled to the
    window) plus one per worker.

    Pure. The per-worker term keeps every worker busy while the measure is young (a run
    starting on an idle cluster), so the measure can grow to the cluster's true pace: with
    a lookup for each worker in flight, the attempts that finish are as many as the workers
    can do. Sized by the gate alone, a cluster slower than the gate would hold far more than
    a window of work, and a registration would wait behind all of it.
    """
    cluster = math.ceil(finished * window_s / lookback_s) + workers if lookback_s > 0 else 0
    return max(min(gate_capacity, cluster), 1)


def window_capacity(now: datetime | None = None) -> int:
    """``window_size`` for this cluster now: attempts of every host that finished in the
    lookback (deferrals left out: they hold no worker), this host's worker count."""
    now = now or timezone.now()
    lookback = max(settings.bulk_window_seconds, THROUGHPUT_LOOKBACK_SECONDS)
    finished = (
        Attempt.objects.filter(finished_at__gt=now - timedelta(seconds=lookback))
        .exclude(outcome=Outcome.DEFERRED.value)
        .count()
    )
    return window_size(
        window_s=settings.bulk_window_seconds,
        gate_capacity=settings.bulk_capacity,
        finished=finished,
        lookback_s=lookback,
        workers=settings.cluster_workers,
    )


def in_flight_window(now: datetime | None = None) -> int:
    """Lookups the gate must serve within the window: pending, scraping, due within it, or
    deferred.

    A lookup deferred by the closed gate (``retrying``, its last attempt ``deferred``) is in
    flight whatever its due time: it holds a place on the gate's deferral cursor, and every
    fresh lookup queues behind the cursor. Left out, each member fed while the cursor is
    ahead would be deferred at once and drop out of the window, so that the feeder could
    drain the whole run onto the cursor, ahead of every registration.
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.bulk_window_seconds)
    deferred = Attempt.objects.filter(
        lookup=OuterRef("pk"), step=OuterRef("step") - 1, outcome=Outcome.DEFERRED.value
    )
    return CedulaInfo.objects.filter(
        Q(status__in=(Status.PENDING, Status.SCRAPING))
        | Q(status=Status.RETRYING, next_attempt_at__lte=horizon)
        | Q(status=Status.RETRYING, next_attempt_at=None)
        | (Q(status=Status.RETRYING) & Exists(deferred))
    ).count()


def gate_now(now: datetime | None = None) -> tuple[GateState, datetime]:
    """The gate's state (from its row; no row: a fresh gate) and ``now`` (by default the
    database's clock, which the gate keeps its times on)."""
    state, db_now = GateStore(GATE_NAME, inline=True).read()
    return state, now or db_now


def deferred_ahead(state: GateState, now: datetime) -> bool:
    """Whether the gate's deferral cursor is later than ``now``.

    While it is, deferred lookups are still waiting for their places and the gate defers
    every fresh lookup behind them: a member fed now would only be deferred too, and a
    registration would land behind it.
    """
    return state.defer_cursor is not None and state.defer_cursor > now
