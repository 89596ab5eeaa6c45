"""Snapshots of answers in no known shape: one row per signature, the page kept once.

The scraper says which shape check failed (``LookupResult.meta["signature"]``) and, from a
browser, hands over the page (``LookupResult.snapshot``: HTML, answer body, screenshot, all
scrubbed of the cédula). ``keep`` counts every occurrence and stores the page only for the
first one of each signature, so a site that changed answers every member the same way costs
one row. ``prune`` deletes signatures not seen for ``CENSUS_SNAPSHOT_RETENTION``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from census import events
from census.cedula import scrub
from census.conf import settings
from census.events import Event
from census.models import PageSnapshot
from census.scraper.base import SNAPSHOT_HTML_CHARS, SNAPSHOT_PNG_BYTES, LookupResult
from census.scraper.parser import scrub_page

#: Characters kept of a snapshot's detail and signature (their columns' lengths).
DETAIL_CHARS = 500
SIGNATURE_CHARS = 80
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def signature_of(result: LookupResult) -> str:
    """The shape signature a result carries, whatever its outcome: an ``unexpected_page``,
    or the deferral it became while the site counts as changed ("" when none)."""
    return str(result.meta.get("signature") or "")[:SIGNATURE_CHARS]


def keep(result: LookupResult, *, lookup_id: int | None, step: int | None, cedula: str) -> bool:
    """Count one occurrence of the result's signature; store the page if it is the first.

    ``cedula`` is the stored value: every text is scrubbed of it again here (the scraper
    scrubbed its canonical digits), and bounded. True when a new signature was stored.
    """
    signature = signature_of(result)
    if not signature:
        return False
    if _seen_again(signature):
        return False
    snapshot = result.snapshot
    png = snapshot.png if snapshot is not None else None
    if png is not None and (len(png) > SNAPSHOT_PNG_BYTES or not png.startswith(_PNG_MAGIC)):
        png = None
    row = PageSnapshot(
        signature=signature,
        lookup_id=lookup_id,
        step=step,
        detail=scrub(result.detail, cedula)[:DETAIL_CHARS],
        path=scrub(snapshot.path if snapshot else "", cedula)[:200],
        html=scrub_page(snapshot.html if snapshot else "", cedula),
        body=scrub(snapshot.body if snapshot else "", cedula)[:SNAPSHOT_HTML_CHARS],
        screenshot=png,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:  # another worker stored it first: count this one
        _seen_again(signature)
        return False
    events.emit(
        Event.SNAPSHOT_KEPT,
        signature=signature,
        html_chars=len(row.html),
        screenshot_bytes=len(png) if png else 0,
    )
    return True


def _seen_again(signature: str) -> bool:
    updated = PageSnapshot.objects.filter(signature=signature).update(
        count=F("count") + 1, last_seen_at=Now()
    )
    return updated > 0


def prune_snapshots(*, now: datetime | None = None) -> int:
    """Delete signatures last seen longer ago than ``CENSUS_SNAPSHOT_RETENTION``."""
    retention = settings.snapshot_retention_seconds
    if retention is None:
        return 0
    cutoff = (now or timezone.now()) - timedelta(seconds=retention)
    deleted, _ = PageSnapshot.objects.filter(last_seen_at__lt=cutoff).delete()
    return deleted
