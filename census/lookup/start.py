"""Registration: a new member's lookup, created in PENDING (if ``CENSUS_LOOKUP_FOR`` accepts
them); attempt 1 queued once it commits."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from census import events
from census.conf import settings
from census.events import Event
from census.gate.shares import WorkClass
from census.lookup import capacity
from census.lookup.status import log_created
from census.models import CedulaInfo, Status
from census.q2.queue import queue_now


def on_registration(user: Any) -> CedulaInfo | None:
    """A new user's lookup (``start_lookup``) if ``CENSUS_LOOKUP_FOR`` accepts them; else
    none at all, and ``lookup_skipped`` once the registration commits."""
    if settings.lookup_for(user):
        return start_lookup(user, work_class=capacity.class_for(user))
    transaction.on_commit(partial(events.emit, Event.LOOKUP_SKIPPED, user_id=user.pk), robust=True)
    return None


def start_lookup(
    user: Any,
    *,
    work_class: WorkClass = WorkClass.REGISTRATION,
    requester_id: int | None = None,
) -> CedulaInfo:
    """Create the user's lookup in PENDING; attempt 1 is queued when the transaction commits.

    ``work_class``: what share of the site it gets (``census.gate.shares``); a bulk run
    passes its own, and who asked (``requester_id``).
    """
    info = CedulaInfo.objects.create(
        user=user,
        status=Status.PENDING,
        work_class=work_class.value,
        requested_by_id=requester_id,
        requested_at=timezone.now() if requester_id is not None else None,
    )
    # robust: a failing enqueue must not break the registration; the sweeper resumes it.
    transaction.on_commit(partial(_queue_first_attempt, info), robust=True)
    return info


def _queue_first_attempt(info: CedulaInfo) -> None:
    # Logged here, not in the transaction: a rolled-back registration must leave no event.
    log_created(info)
    queue_now(info.pk, info.step)
