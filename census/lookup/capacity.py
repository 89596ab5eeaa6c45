"""The site's capacity shared between work classes, applied (the rules: ``census.gate.shares``).

- ``wait_for_share``: before an attempt opens a browser or takes a captcha token, may its class use
  the site now? If not, the attempt sends nothing and waits, uncharged, off the gate's line
  (``capacity: ...``), for its share to come round or for spare capacity;
- ``class_for``: the class of a new member's lookup (``CENSUS_IS_VERIFIED``);
- ``mark_verified``: the portal verified a member: their waiting lookup becomes a
  registration and runs now;
- ``queues``: each class's queue, for the stats, the metrics and the admin.

The counts come from the lookups' and attempts' rows: no shared counter to drift. Two
attempts that decide at once each count the other's claimed attempt as used, so a race ends
with one waiting too many, never with a class past its share.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from census import events
from census.conf import settings
from census.events import Event
from census.gate.shares import (
    HORIZON_SECONDS,
    SHARED,
    Demand,
    SharePolicy,
    WorkClass,
    share_wait,
)
from census.lookup.status import bring_forward, locked
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import CAPACITY_REASON, Outcome
from census.q2 import queue
from census.scraper.base import LookupResult

#: A wait is stretched by up to this fraction at random, so that lookups deferred together
#: do not all come back at the same moment.
JITTER = 0.2


def share_policy() -> SharePolicy:
    """The sharing's numbers from the settings, read now."""
    return SharePolicy(interval=settings.rate_limit_seconds, shares=settings.capacity_shares)


def class_for(user: Any) -> WorkClass:
    """A new member's lookup: a registration, or an unverified one (``CENSUS_IS_VERIFIED``)."""
    verified = settings.is_verified(user)
    return WorkClass.REGISTRATION if verified else WorkClass.UNVERIFIED


def _waiting_filter(now: datetime) -> Q:
    """Lookups that want the site now or soon: queued, running, or due within the horizon."""
    soon = now + timedelta(seconds=HORIZON_SECONDS)
    return (
        Q(status__in=(Status.PENDING, Status.SCRAPING))
        | Q(status=Status.RETRYING, next_attempt_at__lte=soon)
        | Q(status=Status.RETRYING, next_attempt_at=None)
    )


def waiting(now: datetime, *, besides: int | None = None) -> dict[WorkClass, int]:
    """Lookups that wait, per class (``besides``: a lookup left out, the one asking)."""
    rows = CedulaInfo.objects.filter(_waiting_filter(now))
    if besides is not None:
        rows = rows.exclude(pk=besides)
    counts = rows.values("work_class").annotate(n=Count("pk")).order_by()
    return {WorkClass(row["work_class"]): row["n"] for row in counts}


def _used(work_class: WorkClass, now: datetime, window: float, besides: int) -> tuple[int, float]:
    """Attempts of ``work_class`` that took the site in the window (sent, or still running),
    and the age of the oldest."""
    since = now - timedelta(seconds=window)
    row = (
        Attempt.objects.filter(work_class=work_class.value, started_at__gte=since)
        .filter(Q(sent=True) | Q(outcome=""))
        .exclude(lookup_id=besides)
        .aggregate(n=Count("pk"), oldest=Min("started_at"))
    )
    oldest = row["oldest"]
    return row["n"], (now - oldest).total_seconds() if oldest else 0.0


def wait_for_share(lookup_id: int, work_class: str) -> LookupResult | None:
    """None when ``work_class`` may use the site now; else the deferral that waits."""
    cls = WorkClass(work_class or WorkClass.REGISTRATION)
    if cls is WorkClass.REGISTRATION:
        return None
    policy = share_policy()
    if policy.interval <= 0:
        return None
    now = timezone.now()
    counts = waiting(now, besides=lookup_id)
    used, oldest = _used(cls, now, policy.window, lookup_id) if cls in SHARED else (0, 0.0)
    wait = share_wait(cls, Demand(waiting=counts, used=used, oldest_age=oldest), policy)
    if wait is None:
        return None
    seconds = wait.seconds * (1 + random.uniform(0, JITTER))  # noqa: S311 (not secret)
    return LookupResult(
        outcome=Outcome.DEFERRED,
        detail=f"{CAPACITY_REASON}: {wait.why}",
        retry_after=seconds,
        meta={"sent": False},
    )


def mark_verified(user: Any) -> bool:
    """The portal verified ``user``: their unverified lookup becomes a registration and, if
    it waits for spare capacity, runs now. True if a lookup changed.

    Call it once the verification commits (``transaction.on_commit`` in a view). A user
    whose lookup is a registration already, or who has none, changes nothing.
    """
    info = CedulaInfo.objects.filter(user=user).only("pk").first()
    if info is None:
        return False
    with locked(info.pk) as current:
        if current is None or current.work_class != WorkClass.UNVERIFIED:
            return False
        current.work_class = WorkClass.REGISTRATION.value
        current.save(update_fields=["work_class"])
        now = timezone.now()
        if bring_forward(current.pk, current.step, now):
            queue.advance_attempt(current.pk, current.step, now)
        step = current.step
    transaction.on_commit(
        lambda: events.emit(Event.LOOKUP_VERIFIED, lookup_id=info.pk, step=step), robust=True
    )
    return True


@dataclass(frozen=True, kw_only=True)
class ClassQueue:
    """One work class now: what waits, what it used of the site in the last hour, its share."""

    work_class: WorkClass
    waiting: int
    #: Consultas sent for this class in the last hour.
    sent_last_hour: int
    #: The share it may use while registrations wait (None: registrations, no cap; 0.0 for
    #: unverified: spare capacity only).
    share: float | None


def queues(now: datetime | None = None) -> list[ClassQueue]:
    """Every class's queue, highest priority first."""
    now = now or timezone.now()
    counts = waiting(now)
    sent = dict(
        Attempt.objects.filter(sent=True, sent_at__gte=now - timedelta(hours=1))
        .values_list("work_class")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("work_class", "n")
    )
    policy = share_policy()
    return [
        ClassQueue(
            work_class=cls,
            waiting=counts.get(cls, 0),
            sent_last_hour=sent.get(cls.value, 0),
            share=policy.share(cls)
            if cls in SHARED
            else (0.0 if cls is WorkClass.UNVERIFIED else None),
        )
        for cls in WorkClass
    ]
