"""The operator's pause: all census traffic stops at once, and nothing queued is lost.

Stored on the gate's row (``RateGate.paused_at``), so every worker of every cluster obeys
it at its next look: a task that starts while paused claims nothing and sends nothing (the
lookup stays ``pending`` or ``retrying``, its budget untouched), the gate refuses any
request already on its way (deferred, not charged), bulk runs stop feeding and the sweeper
stops re-queueing. ``census_resume`` clears it and queues every waiting lookup again,
oldest due first; the gate then spaces them at the site's pace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db import transaction
from django.utils import timezone

from census import events
from census.events import Event
from census.gate.waiter import DEFAULT_NAME
from census.models import RateGate


@dataclass(frozen=True)
class Pause:
    since: datetime
    by: str
    reason: str


def current() -> Pause | None:
    """The pause in force, or None (one small query)."""
    row = (
        RateGate.objects.filter(name=DEFAULT_NAME, paused_at__isnull=False)
        .only("paused_at", "paused_by", "pause_reason")
        .first()
    )
    if row is None or row.paused_at is None:
        return None
    return Pause(since=row.paused_at, by=row.paused_by, reason=row.pause_reason)


def pause(*, by: str, reason: str = "") -> Pause:
    """Stop all census traffic; a pause in force keeps its start, and takes the new reason."""
    with transaction.atomic():
        row, _ = RateGate.objects.select_for_update().get_or_create(
            name=DEFAULT_NAME, defaults={"next_allowed_at": timezone.now()}
        )
        row.paused_at = row.paused_at or timezone.now()
        row.paused_by, row.pause_reason = by[:150], reason[:300]
        row.save(update_fields=["paused_at", "paused_by", "pause_reason"])
        paused = Pause(since=row.paused_at, by=row.paused_by, reason=row.pause_reason)
        transaction.on_commit(
            partial(events.emit, Event.CENSUS_PAUSED, by=paused.by, reason=paused.reason)
        )
    return paused


def resume(*, by: str) -> Pause | None:
    """Clear the pause; returns the one that was in force (None: there was none). The
    caller queues the waiting lookups again (``census.maintenance.sweeper.requeue_waiting``)."""
    with transaction.atomic():
        row = RateGate.objects.select_for_update().filter(name=DEFAULT_NAME).first()
        if row is None or row.paused_at is None:
            return None
        was = Pause(since=row.paused_at, by=row.paused_by, reason=row.pause_reason)
        row.paused_at, row.paused_by, row.pause_reason = None, "", ""
        row.save(update_fields=["paused_at", "paused_by", "pause_reason"])
        paused_s = round((timezone.now() - was.since).total_seconds(), 3)
        transaction.on_commit(
            partial(events.emit, Event.CENSUS_RESUMED, by=by[:150], paused_s=paused_s)
        )
    return was
