"""The one writer of ``CedulaInfo.status``: checks each move, saves it, and logs it on commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from census.exceptions import CensusError
from census.lookup import announce
from census.models import FINAL_STATUSES, CedulaInfo, Status

#: Allowed moves. A final status goes back to PENDING only through a leader's refresh.
ALLOWED: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.SCRAPING}),
    Status.SCRAPING: frozenset(
        {Status.RETRYING, Status.FOUND, Status.NOT_FOUND, Status.CANCELLED, Status.ERROR}
    ),
    Status.RETRYING: frozenset({Status.SCRAPING}),
    **{final: frozenset({Status.PENDING}) for final in FINAL_STATUSES},
}


class TransitionRefused(CensusError):
    """The move is not allowed from the lookup's current status, or the attempt is stale."""


@contextmanager
def locked(lookup_id: int) -> Iterator[CedulaInfo | None]:
    """Open a transaction holding the lookup's row lock; yields None if it is gone."""
    with transaction.atomic():
        yield CedulaInfo.objects.select_for_update().filter(pk=lookup_id).first()


def check(info: CedulaInfo, to: Status, *, step: int) -> None:
    """Raise ``TransitionRefused`` unless ``info`` may move to ``to`` for ``attempt``."""
    current = info.current_status
    if info.step != step:
        raise TransitionRefused(f"step {step} is stale: lookup is at {info.step}")
    if to not in ALLOWED[current]:
        raise TransitionRefused(f"{current.value} -> {to.value} is not allowed")


def transition(
    info: CedulaInfo,
    to: Status,
    *,
    step: int,
    fields: dict[str, Any] | None = None,
    log: dict[str, Any] | None = None,
) -> None:
    """Move ``info`` (locked by the caller) to ``to`` and save; the event follows the commit.

    ``fields`` are other model fields saved with the move; ``log`` adds event fields.
    """
    check(info, to, step=step)
    from_status = info.current_status
    now = timezone.now()
    changes: dict[str, Any] = {"status": to.value, "status_changed_at": now, **(fields or {})}
    if to is not Status.SCRAPING:  # a deferral's ticket lasts until its attempt concludes
        changes.setdefault("ticketed", False)
    if to in FINAL_STATUSES:
        changes["finished_at"] = now
    elif from_status in FINAL_STATUSES:
        changes["finished_at"] = None
    for name, value in changes.items():
        setattr(info, name, value)
    info.save(update_fields=list(changes))
    fields = _event_fields(info, from_status.value, to.value, log)
    # robust: a failure here is logged by Django and must not undo or stop the pipeline.
    transaction.on_commit(partial(announce.status_changed, info, fields), robust=True)


def log_created(info: CedulaInfo) -> None:
    """The event and signal of a lookup's birth in PENDING (after the registration commits)."""
    announce.status_changed(info, _event_fields(info, None, Status.PENDING.value, None))


def _event_fields(
    info: CedulaInfo, from_status: str | None, to_status: str, log: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "lookup_id": info.pk,
        "user_id": info.user_id,
        "step": info.step,
        "retry_count": info.retry_count,
        "from_status": from_status,
        "to_status": to_status,
        **(log or {}),
    }


def bring_forward(lookup_id: int, step: int, due: datetime) -> bool:
    """A lookup retrying at ``step`` runs at ``due`` instead, if that is sooner (its status
    does not change); True if it moved. The caller moves its schedule in the same
    transaction (``census.q2.queue.advance_attempt``)."""
    moved = CedulaInfo.objects.filter(
        pk=lookup_id, step=step, status=Status.RETRYING, next_attempt_at__gt=due
    ).update(next_attempt_at=due)
    return bool(moved)
