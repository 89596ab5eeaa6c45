"""A leader's manual refresh: a fresh attempt budget for a finished lookup."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from census import events
from census.conf import settings
from census.events import Event
from census.models import CedulaInfo, Status
from census.queue import queue_now
from census.transitions import locked, transition


def request_refresh(info: CedulaInfo, *, requested_by: Any) -> bool:
    """Start a fresh attempt budget for a finished lookup; leaders only.

    Raises ``PermissionDenied`` for anyone else. Returns False (and queues nothing) while
    the lookup is still in flight.
    """
    requester_id = getattr(requested_by, "pk", None)
    if not settings.is_leader(requested_by):
        events.emit(Event.REFRESH_DENIED, lookup_id=info.pk, requested_by=requester_id)
        raise PermissionDenied("only leaders may request a new census lookup")
    with locked(info.pk) as current:
        if current is None or not current.current_status.is_final:
            events.emit(
                Event.REFRESH_SKIPPED,
                lookup_id=info.pk,
                requested_by=requester_id,
                status=current.status if current else None,
            )
            return False
        transition(
            current,
            Status.PENDING,
            attempt=current.attempt,
            fields={
                "attempt": current.attempt + 1,
                "budget_start": current.attempt + 1,
                "retry_count": 0,
                "deferred_s": 0.0,
                "next_attempt_at": None,
            },
            log={"requested_by": requester_id},
        )
        transaction.on_commit(partial(queue_now, current.pk, current.attempt), robust=True)
    events.emit(
        Event.REFRESH_REQUESTED,
        lookup_id=info.pk,
        requested_by=requester_id,
        attempt=current.attempt,
    )
    info.refresh_from_db()
    return True
