"""A bulk run's life: opened with its members frozen (or resumed: a selection has at most
one open run), its progress counted from the member rows, finished once every member is
final, or cancelled. What feeds it is ``census.bulk.feeder``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from census import events
from census.bulk.selection import FINAL_VALUES, Selection
from census.conf import settings
from census.events import Event
from census.models import BulkMember, BulkRun
from census.q2 import queue


def open_run(
    selection: Selection,
    *,
    requested_by: Any,
    kind: str = BulkRun.Kind.COMMAND,
    background: bool = False,
) -> tuple[BulkRun | None, bool]:
    """The open run with this selection (resumed), else a new one; (None, False) if empty.

    Returns ``(run, resumed)``. A new run freezes its members now. A selection has at most
    one open run, whatever its kind (``census_bulkrun_one_open_per_selection``): a call
    racing another that created the run first resumes that run.
    """
    with transaction.atomic():
        existing = _open_run_of(selection.key)
        if existing is not None:
            return _resume(existing, background), True
        pks = selection.user_pks()
        if not pks:
            return None, False
        try:
            with transaction.atomic():
                run = BulkRun.objects.create(
                    kind=kind,
                    requested_by=requested_by,
                    selection=selection.key,
                    background=background,
                    total=len(pks),
                )
        except IntegrityError:
            # Another call opened this selection since we looked (on PostgreSQL our insert
            # waited for its commit): resume its run.
            existing = _open_run_of(selection.key)
            if existing is None:
                raise
            return _resume(existing, background), True
        BulkMember.objects.bulk_create(
            [BulkMember(run=run, user_id=pk) for pk in pks], batch_size=1000
        )
        if background:
            queue.schedule_feeder(run.pk)
    events.emit(
        Event.BULK_RUN_STARTED,
        run_id=run.pk,
        kind=kind,
        selection=run.selection,
        members=run.total,
        requested_by=run.requested_by_id,
        background=background,
    )
    return run, False


def _open_run_of(key: str) -> BulkRun | None:
    """The open run with this selection key, locked."""
    return (
        BulkRun.objects.select_for_update()
        .filter(selection=key, finished_at=None, cancelled_at=None)
        .order_by("pk")
        .first()
    )


def _resume(run: BulkRun, background: bool) -> BulkRun:
    if background and not run.background:
        run.background = True
        run.save(update_fields=["background"])
    if run.background:
        queue.schedule_feeder(run.pk)
    return run


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Where a run stands. ``done``: members with a final status since they were fed."""

    run_id: int
    total: int
    fed: int
    done: int
    in_flight: int
    unfed: int
    finished: bool
    cancelled: bool
    #: Seconds the rate gate needs for what is left (unfed + in flight), at least.
    eta_s: float


def progress(run: BulkRun) -> Progress:
    """Counted from the member rows (a member whose user was deleted is gone with it)."""
    members = BulkMember.objects.filter(run=run)
    total = members.count()
    fed = members.exclude(fed_at=None)
    fed_count = fed.count()
    done = fed.filter(user__cedula_info__status__in=FINAL_VALUES).count()
    unfed, in_flight = total - fed_count, fed_count - done
    return Progress(
        run_id=run.pk,
        total=total,
        fed=fed_count,
        done=done,
        in_flight=in_flight,
        unfed=unfed,
        finished=run.finished_at is not None,
        cancelled=run.cancelled_at is not None,
        eta_s=(unfed + in_flight) * settings.rate_limit_seconds,
    )


def finish_if_done(run_id: int) -> Progress | None:
    """Mark the run finished once every member is fed and final; its progress (None: gone).

    A cancelled run stays cancelled: only a run neither finished nor cancelled when the
    update runs is finished (a cancel landing after the read above wins).
    """
    run = BulkRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    state = progress(run)
    if run.is_open and state.unfed == 0 and state.in_flight == 0:
        updated = BulkRun.objects.filter(pk=run_id, finished_at=None, cancelled_at=None).update(
            finished_at=timezone.now()
        )
        queue.remove_feeder(run_id)
        if updated:
            events.emit(
                Event.BULK_RUN_FINISHED, run_id=run_id, members=state.total, done=state.done
            )
            return replace(state, finished=True)
        closed = BulkRun.objects.filter(pk=run_id).first()
        if closed is None:
            return None
        state = replace(
            state,
            finished=closed.finished_at is not None,
            cancelled=closed.cancelled_at is not None,
        )
    return state


def cancel(run_ids: Iterable[int] | None = None) -> list[int]:
    """Cancel open runs (all of them without ids): nothing more is fed; queued lookups finish."""
    runs = BulkRun.objects.filter(finished_at=None, cancelled_at=None)
    if run_ids is not None:
        runs = runs.filter(pk__in=list(run_ids))
    cancelled = []
    for run in runs:
        still_open = BulkRun.objects.filter(pk=run.pk, finished_at=None, cancelled_at=None)
        if still_open.update(cancelled_at=timezone.now()):
            queue.remove_feeder(run.pk)
            state = progress(run)
            events.emit(Event.BULK_RUN_CANCELLED, run_id=run.pk, fed=state.fed, unfed=state.unfed)
            cancelled.append(run.pk)
    return cancelled
