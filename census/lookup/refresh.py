"""A fresh attempt budget for a finished lookup: a leader's refresh, a bulk run, a re-check.

Every door (the admin action, the portal's button, ``census_lookup``, the periodic re-check)
checks who asks once, then goes through ``restart``: same transition, same events. Who may
refresh which lookup is one rule, ``CENSUS_CAN_REFRESH`` (``can_refresh`` by default), asked
by ``check_refresh`` (a lookup) and ``refused_users`` (a bulk selection); the periodic
re-check is the operator's own setting and asks nobody.

How often is ``check_throttle``'s: a lookup is refreshed at most once per
``CENSUS_REFRESH_COOLDOWN`` after it ended, and one user asks at most
``CENSUS_REFRESH_PER_HOUR`` refreshes an hour. What share of the site a refresh then gets is
``census.gate.shares``'s: each budget carries its work class.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from census import events
from census.conf import settings
from census.events import Event
from census.exceptions import CensusError
from census.gate.shares import WorkClass
from census.lookup.results import result_of
from census.lookup.start import start_lookup
from census.lookup.status import locked, transition
from census.models import CedulaInfo, Status
from census.q2.queue import queue_now


def check_leader(requested_by: Any, **context: Any) -> None:
    """Raise ``PermissionDenied`` (and log ``refresh_denied``) unless a leader asks."""
    if not settings.is_leader(requested_by):
        events.emit(Event.REFRESH_DENIED, requested_by=getattr(requested_by, "pk", None), **context)
        raise PermissionDenied("only leaders may request a new census lookup")


def can_refresh(user: Any, lookup: CedulaInfo) -> bool:
    """Default ``CENSUS_CAN_REFRESH``: whoever ``CENSUS_IS_LEADER`` admits, any lookup.

    census has no notion of who referred whom; a portal that has one names a rule of its
    own, e.g. leader *and* referrer of ``lookup.user`` (the example portal's
    ``portal.leaders.can_refresh``).
    """
    return bool(settings.is_leader(user))


def check_refresh(requested_by: Any, info: CedulaInfo, **context: Any) -> None:
    """Raise ``PermissionDenied`` (and log ``refresh_denied``) unless ``CENSUS_CAN_REFRESH``
    lets ``requested_by`` refresh ``info``."""
    if not settings.can_refresh(requested_by, info):
        events.emit(
            Event.REFRESH_DENIED,
            requested_by=getattr(requested_by, "pk", None),
            lookup_id=info.pk,
            **context,
        )
        raise PermissionDenied("not allowed to request a new census lookup of this member")


def refused_users(requested_by: Any, user_ids: Iterable[int]) -> list[int]:
    """The users among ``user_ids`` whose lookup ``CENSUS_CAN_REFRESH`` does not let
    ``requested_by`` refresh (the rule asked once per lookup; a user without a lookup has
    nothing to refresh and is not refused here: ``CENSUS_LOOKUP_FOR`` decides their first)."""
    can = settings.can_refresh
    lookups = CedulaInfo.objects.filter(user_id__in=list(user_ids)).select_related("user")
    return sorted(
        info.user_id for info in lookups.iterator(chunk_size=2000) if not can(requested_by, info)
    )


def check_refresh_users(requested_by: Any, user_ids: Iterable[int], **context: Any) -> None:
    """Raise ``PermissionDenied`` (and log ``refresh_denied`` with the count) unless
    ``requested_by`` may refresh every existing lookup among ``user_ids``."""
    refused = refused_users(requested_by, user_ids)
    if refused:
        events.emit(
            Event.REFRESH_DENIED,
            requested_by=getattr(requested_by, "pk", None),
            refused=len(refused),
            **context,
        )
        raise PermissionDenied(
            f"{len(refused)} of the selected lookups are not this user's to refresh"
        )


class RefreshThrottled(CensusError, PermissionDenied):
    """A refresh refused for its timing, not for who asks: ``reason`` is ``"cooldown"`` (the
    lookup ended less than ``CENSUS_REFRESH_COOLDOWN`` ago) or ``"hourly_limit"`` (the
    requester reached ``CENSUS_REFRESH_PER_HOUR``); ``retry_after``: whole seconds until
    it would be let in. A ``PermissionDenied``: code that only knows that one still refuses."""

    def __init__(self, reason: str, retry_after: int) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"refresh refused ({reason}); try again in {retry_after} s")


#: The period ``CENSUS_REFRESH_PER_HOUR`` counts over.
HOUR = timedelta(hours=1)


def check_throttle(requested_by: Any, info: CedulaInfo, **context: Any) -> None:
    """Raise ``RefreshThrottled`` (and log ``refresh_throttled``) when ``info`` ended within
    ``CENSUS_REFRESH_COOLDOWN``, or ``requested_by`` asked ``CENSUS_REFRESH_PER_HOUR``
    refreshes in the last hour. A lookup in flight is not throttled: ``restart`` skips it.

    The hourly count is of lookups whose current budget this user started as a refresh;
    two requests at the same instant may both pass it (one over the cap at most per
    concurrent request).
    """
    now = timezone.now()
    verdict = _throttled(requested_by, info, now)
    if verdict is None:
        return
    reason, wait = verdict
    retry_after = max(1, math.ceil(wait))
    events.emit(
        Event.REFRESH_THROTTLED,
        requested_by=getattr(requested_by, "pk", None),
        lookup_id=info.pk,
        reason=reason,
        retry_after_s=retry_after,
        **context,
    )
    raise RefreshThrottled(reason, retry_after)


def _throttled(requested_by: Any, info: CedulaInfo, now: datetime) -> tuple[str, float] | None:
    """Why and for how long a refresh must wait (None: it need not)."""
    cooldown = settings.refresh_cooldown
    if cooldown > 0 and info.current_status.is_final and info.finished_at is not None:
        left = cooldown - (now - info.finished_at).total_seconds()
        if left > 0:
            return "cooldown", left
    cap = settings.refresh_per_hour
    requester = getattr(requested_by, "pk", None)
    if cap is None or requester is None:
        return None
    recent = CedulaInfo.objects.filter(
        requested_by_id=requester, requested_at__gt=now - HOUR, work_class=WorkClass.REFRESH
    ).exclude(pk=info.pk)
    times = sorted(t for t in recent.values_list("requested_at", flat=True) if t is not None)
    if len(times) < cap:
        return None
    if cap == 0:
        return "hourly_limit", HOUR.total_seconds()
    # Let in again once enough of the counted requests are an hour old.
    return "hourly_limit", (times[len(times) - cap] + HOUR - now).total_seconds()


def request_refresh(info: CedulaInfo, *, requested_by: Any, **context: Any) -> bool:
    """Start a fresh attempt budget for a finished lookup, if ``CENSUS_CAN_REFRESH`` lets
    ``requested_by`` refresh it (by default: leaders) and ``check_throttle`` lets it now.

    Raises ``PermissionDenied`` for anyone else, ``RefreshThrottled`` (a
    ``PermissionDenied``) when it is too soon. Returns False (and queues nothing) while the
    lookup is still in flight. The new budget is of the ``refresh`` class: while new
    registrations wait it gets only its share of the site (``CENSUS_CAPACITY_SHARES``).
    """
    check_refresh(requested_by, info, **context)
    check_throttle(requested_by, info, **context)
    started = restart(
        info.pk, requester_id=getattr(requested_by, "pk", None), work_class=WorkClass.REFRESH
    )
    info.refresh_from_db()
    return started


def restart(
    lookup_id: int, *, requester_id: int | None, work_class: WorkClass = WorkClass.REFRESH
) -> bool:
    """A fresh budget for a final lookup (the caller checked who asks); False if in flight.

    The previous result is kept in ``previous_result``; the attempt is queued on commit.
    ``work_class``: what share of the site the budget gets (``census.gate.shares``).
    """
    with locked(lookup_id) as current:
        if current is None or not current.current_status.is_final:
            events.emit(
                Event.REFRESH_SKIPPED,
                lookup_id=lookup_id,
                requested_by=requester_id,
                status=current.status if current else None,
            )
            return False
        transition(
            current,
            Status.PENDING,
            step=current.step,
            fields={
                "step": current.step + 1,
                "budget_start": current.step + 1,
                "retry_count": 0,
                "deferred_s": 0.0,
                "next_attempt_at": None,
                "previous_result": result_of(current),
                "work_class": work_class.value,
                "requested_by_id": requester_id,
                "requested_at": timezone.now(),
            },
            log={"requested_by": requester_id},
        )
        transaction.on_commit(partial(queue_now, current.pk, current.step), robust=True)
        _log_requested_on_commit(current, requester_id)
    return True


def _log_requested_on_commit(info: CedulaInfo, requester_id: int | None) -> None:
    transaction.on_commit(
        partial(
            events.emit,
            Event.REFRESH_REQUESTED,
            lookup_id=info.pk,
            requested_by=requester_id,
            step=info.step,
        ),
        robust=True,
    )


def start_for_user(user: Any, *, requester_id: int | None) -> bool:
    """A bulk run's lookup for ``user`` now: its first one if it has none, else a fresh
    budget; either of the ``bulk`` class.

    False when its lookup is in flight (nothing queued). The caller checked who asks.
    """
    info = CedulaInfo.objects.filter(user=user).only("pk").first()
    if info is None:
        try:
            with transaction.atomic():
                created = start_lookup(user, work_class=WorkClass.BULK, requester_id=requester_id)
        except IntegrityError:  # created meanwhile (a registration, another run)
            info = CedulaInfo.objects.get(user=user)
        else:
            _log_requested_on_commit(created, requester_id)
            return True
    return restart(info.pk, requester_id=requester_id, work_class=WorkClass.BULK)
