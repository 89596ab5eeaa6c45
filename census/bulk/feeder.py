"""Feeding a bulk run: start its next members' lookups, as many as the window has room for,
one feeder at a time cluster-wide; a round of a feeder (feed, then finish the run if it is
done) from the terminal or from the run's Django-Q2 schedule (``census-bulk-<id>``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from census import events
from census.bulk.runs import Progress, finish_if_done
from census.bulk.window import deferred_ahead, gate_now, in_flight_window, window_capacity
from census.conf import settings
from census.events import Event
from census.lookup.refresh import start_for_user
from census.models import BulkMember, BulkRun
from census.q2 import queue


@dataclass(frozen=True, kw_only=True)
class Feed:
    """One feed: how many lookups it started, and why it stopped short, if it did."""

    started: int = 0
    #: Members whose lookup was already in flight (counted, nothing queued).
    in_flight: int = 0
    #: Lookups in the window before this feed, and the window's capacity (``window_size``).
    queued_before: int = 0
    capacity: int = 0
    #: "" or why nothing was fed: "paused" (census_pause), "breaker_open", "deferred_ahead"
    #: (deferred lookups still wait for their places on the gate's cursor), "window_full",
    #: "closed".
    paused: str = ""


def feed(run_id: int, *, now: datetime | None = None) -> Feed:
    """Start the next members of an open run, as many as the window has room for.

    One feeder at a time, cluster-wide (``_lock_feeders``): the window is computed and
    filled by one transaction before the next feeder looks at it.
    """
    with transaction.atomic():
        run = _lock_feeders(run_id)
        if run is None or not run.is_open:
            return Feed(paused="closed", capacity=settings.bulk_capacity)
        capacity = window_capacity(now)
        gate, gate_time = gate_now(now)
        queued = in_flight_window(now)
        if gate.paused_at is not None:  # an operator stopped all census traffic
            return Feed(paused="paused", queued_before=queued, capacity=capacity)
        if gate.phase(gate_time).holds_traffic:
            return Feed(paused="breaker_open", queued_before=queued, capacity=capacity)
        # Both guards: the pause keeps the run off the cursor altogether (a member fed now
        # would be deferred at once); counting deferred lookups in the window keeps its bound
        # without relying on how the gate places deferrals on its cursor.
        if deferred_ahead(gate, gate_time):
            return Feed(paused="deferred_ahead", queued_before=queued, capacity=capacity)
        room = capacity - queued
        if room <= 0:
            return Feed(paused="window_full", queued_before=queued, capacity=capacity)
        members = list(
            BulkMember.objects.filter(run=run, fed_at=None).select_related("user")[:room]
        )
        started = skipped = 0
        fed_at = timezone.now()
        for member in members:
            if start_for_user(member.user, requester_id=run.requested_by_id):
                member.fed, started = BulkMember.Fed.STARTED, started + 1
            else:
                member.fed, skipped = BulkMember.Fed.IN_FLIGHT, skipped + 1
            member.fed_at = fed_at
        BulkMember.objects.bulk_update(members, ["fed", "fed_at"])
    result = Feed(started=started, in_flight=skipped, queued_before=queued, capacity=capacity)
    if members:
        events.emit(
            Event.BULK_RUN_FED,
            run_id=run_id,
            started=started,
            in_flight=skipped,
            queued_before=queued,
            capacity=capacity,
        )
    return result


def _lock_feeders(run_id: int) -> BulkRun | None:
    """Lock this run and every open run, in primary-key order; this run (None: gone).

    Feeders of different runs would otherwise each compute the window and fill it, neither
    seeing the other's uncommitted lookups (PostgreSQL's read committed), and together
    overfill it. Every feeder locks the same rows, its own run among them, so a second
    feeder waits for the first to commit and then counts what it queued; one order, so no
    deadlock. A run created meanwhile is locked by the next feeder. No lookup or gate row
    is locked first (the conclusion locks lookup, then gate; the feed, runs, then lookups).
    On SQLite the write lock taken at BEGIN (``transaction_mode`` IMMEDIATE) already
    serializes feeds.
    """
    runs = (
        BulkRun.objects.select_for_update()
        .filter(Q(pk=run_id) | Q(finished_at=None, cancelled_at=None))
        .order_by("pk")
    )
    return next((run for run in runs if run.pk == run_id), None)


def feed_and_finish(run_id: int) -> Progress | None:
    """One round of a feeder (the terminal's or a background run's schedule): feed the
    window, then finish the run if it is done; its progress (None: gone)."""
    feed(run_id)
    return finish_if_done(run_id)


def feed_scheduled(run_id: int) -> dict[str, Any]:
    """The Django-Q2 task of a background run's schedule (``census-bulk-<id>``)."""
    state = feed_and_finish(run_id)
    if state is None or state.finished or state.cancelled:
        # Deleted, or closed by a path that left its feeder (finish and cancel remove it).
        queue.remove_feeder(run_id)
    return {} if state is None else asdict(state)
