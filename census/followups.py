"""Follow-up chains: work a portal ties to a lookup's final status, run in order, once.

``CENSUS_FOLLOW_UPS`` maps a final status (or ``"any"``) to dotted paths of callables.
When a lookup reaches a final status, ``plan`` writes the chain's rows in the same
transaction as the status; once it commits, the first is queued as a Django-Q2 task
(``census-followup-<lookup>-<step>.<position>-<name>``), and each next one is queued when
the one before succeeded. A follow-up is called as ``func(lookup_id=..., key=...)``, inside
one transaction with the row that marks it succeeded: its database work commits with its
success or not at all. ``key`` is the same for every try of a follow-up and different for
any other: work outside the database (an email, an API call) should be made idempotent
with it. A try that raises is retried on ``CENSUS_FOLLOW_UP_RETRY_DELAYS``; after the last
the follow-up is ``failed`` and the rest of its chain waits (the admin can run it again).
The sweeper queues again a follow-up whose task was lost: a killed worker, a lost Redis
message, a deleted task, a failed enqueue.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from census import database, events, logs
from census.cedula import scrub
from census.conf import settings
from census.events import Event
from census.exceptions import CensusError
from census.lookup.report import class_path, raw_cedula
from census.models import CedulaInfo, FollowUp
from census.q2 import queue
from census.q2.context import current_task_id

State = FollowUp.State

#: Characters of a failure kept on the row.
ERROR_CHARS = 500


class FollowUpFailed(CensusError, RuntimeError):
    """A follow-up raised; the message is scrubbed of the cédula before Django-Q2 stores it."""


def plan(info: CedulaInfo) -> int:
    """Inside the transaction that gave ``info`` its final status: write its chain (the
    first link due now, queued once the transaction commits). Returns the chain's length."""
    paths = settings.follow_ups_for(info.status)
    if not paths:
        return 0
    now = timezone.now()
    FollowUp.objects.bulk_create(
        FollowUp(
            lookup=info,
            step=info.step,
            position=position,
            status=info.status,
            path=path,
            state=State.QUEUED if position == 1 else State.WAITING,
            due_at=now if position == 1 else None,
        )
        for position, path in enumerate(paths, start=1)
    )
    first = FollowUp.objects.get(lookup=info, step=info.step, position=1)
    transaction.on_commit(partial(queue_follow_up, first.pk), robust=True)
    return len(paths)


def next_task_name(row: FollowUp) -> str:
    """The name of the task for the row's next try."""
    return queue.follow_up_name(row.lookup_id, row.step, row.position, row.name, row.tries + 1)


def queue_follow_up(follow_up_id: int) -> bool:
    """Queue a follow-up's next try; on failure log it (the sweeper resumes it)."""
    row = FollowUp.objects.filter(pk=follow_up_id, state=State.QUEUED).first()
    if row is None:
        return False
    name = next_task_name(row)
    try:
        queue.enqueue_follow_up(row.pk, name)
    except Exception:
        events.emit(Event.ENQUEUE_FAILED, lookup_id=row.lookup_id, follow_up=name)
        return False
    events.emit(Event.FOLLOW_UP_QUEUED, **_fields(row), task_name=name)
    return True


def _fields(row: FollowUp) -> dict[str, Any]:
    return {
        "lookup_id": row.lookup_id,
        "follow_up_id": row.pk,
        "position": row.position,
        "path": row.path,
        "try": row.tries + (0 if row.state == State.RUNNING else 1),
    }


# -- the task -------------------------------------------------------------------------------


def run_follow_up(follow_up_id: int) -> dict[str, Any]:
    """Django-Q2 task: run one try of a follow-up; returns a small summary."""
    task_id = current_task_id.get()
    claims: list[int] = []

    def claim() -> tuple[FollowUp, str] | None:
        claims.append(1)  # a retry may find the claim its lost connection committed
        row = _claim(follow_up_id, task_id, again=len(claims) > 1)
        return None if row is None else (row, _cedula_of(row))

    # The bookkeeping survives a dropped connection (reconnect, bounded retries); the run
    # itself is one transaction, rolled back by a drop and retried on the ladder.
    claimed = database.retrying(claim, operation="follow_up_claim")
    if claimed is None:
        return {"follow_up_id": follow_up_id, "skipped": True}
    # Portal code runs here: whatever it logs, and its traceback in follow_up_failed, has
    # the member's cédula masked.
    with logs.scrubbing(claimed[1]):
        return _run(follow_up_id, task_id, cedula=claimed[1])


def _run(follow_up_id: int, task_id: str, *, cedula: str) -> dict[str, Any]:
    try:
        with transaction.atomic():
            # Locked for the run: the sweeper leaves a live run alone (PostgreSQL), and a
            # row it took back in the meantime is not ours to finish.
            mine = _locked_run(follow_up_id, task_id)
            if mine is None:
                return {"follow_up_id": follow_up_id, "skipped": True}
            import_string(mine.path)(lookup_id=mine.lookup_id, key=mine.key)
            _succeed(mine)
    except Exception as exc:
        detail = scrub(f"{class_path(exc)}: {exc}", cedula)[:ERROR_CHARS]
        database.retrying(partial(_fail, follow_up_id, task_id, detail), operation="follow_up_fail")
        raise FollowUpFailed(detail) from None  # from None: the cause may echo the cédula
    return {"follow_up_id": follow_up_id, "succeeded": True}


def _locked_run(follow_up_id: int, task_id: str) -> FollowUp | None:
    """The row, locked, if this task's run still holds it."""
    return (
        FollowUp.objects.select_for_update()
        .filter(pk=follow_up_id, state=State.RUNNING, task_id=task_id)
        .first()
    )


def _claim(follow_up_id: int, task_id: str, *, again: bool = False) -> FollowUp | None:
    """QUEUED -> RUNNING for this task, the try counted; None when it is not queued (a
    second delivery, a replayed schedule, a follow-up already done). ``again``: this
    process retries a claim whose connection dropped, perhaps after its commit."""
    with transaction.atomic():
        row = FollowUp.objects.select_for_update().filter(pk=follow_up_id).first()
        if again and row is not None and row.state == State.RUNNING and row.task_id == task_id:
            return row
        if row is None or row.state != State.QUEUED:
            return None
        row.state, row.task_id = State.RUNNING, task_id
        row.tries += 1
        row.started_at, row.finished_at = timezone.now(), None
        row.save(update_fields=["state", "task_id", "tries", "started_at", "finished_at"])
    return row


def _succeed(row: FollowUp) -> None:
    """In the run's transaction: done, and the next link of the chain due now."""
    now = timezone.now()
    FollowUp.objects.filter(pk=row.pk).update(state=State.SUCCEEDED, finished_at=now, error="")
    succeeded = {**_fields(row), "duration_ms": _ms(row.started_at, now)}
    transaction.on_commit(partial(events.emit, Event.FOLLOW_UP_SUCCEEDED, **succeeded))
    following = FollowUp.objects.filter(
        lookup_id=row.lookup_id, step=row.step, position=row.position + 1, state=State.WAITING
    ).first()
    if following is not None:
        FollowUp.objects.filter(pk=following.pk).update(state=State.QUEUED, due_at=now)
        transaction.on_commit(partial(queue_follow_up, following.pk), robust=True)


def _fail(follow_up_id: int, task_id: str, detail: str) -> None:
    """Called while the exception is handled: retry on the ladder, or fail for good."""
    delays = settings.follow_up_retry_delays
    with transaction.atomic():
        row = _locked_run(follow_up_id, task_id)
        if row is None:
            return
        retry = row.tries <= len(delays)
        now = timezone.now()
        row.error, row.finished_at = detail, now
        if retry:
            row.state, row.due_at = State.QUEUED, now + timedelta(seconds=delays[row.tries - 1])
            # Same transaction as the state: with the ORM broker both commit or neither does.
            queue.schedule_follow_up(row.pk, next_task_name(row), row.due_at)
        else:
            row.state = State.FAILED
        row.save(update_fields=["state", "due_at", "error", "finished_at"])
    events.emit(
        Event.FOLLOW_UP_FAILED,
        **{**_fields(row), "try": row.tries},
        will_retry=retry,
        due_at=row.due_at.isoformat() if retry and row.due_at else None,
    )


def _cedula_of(row: FollowUp) -> str:
    """The member's cédula as stored, to mask; "" when the lookup or its user is gone."""
    try:
        return raw_cedula(row.lookup)
    except ObjectDoesNotExist:
        return ""


def _ms(start: datetime | None, end: datetime) -> int | None:
    return None if start is None else int((end - start).total_seconds() * 1000)


# -- operators ------------------------------------------------------------------------------


def run_again(follow_up_id: int) -> bool:
    """A failed follow-up gets a fresh ladder, queued now; the rest of its chain follows
    when it succeeds. False if it has not failed."""
    with transaction.atomic():
        updated = FollowUp.objects.filter(pk=follow_up_id, state=State.FAILED).update(
            state=State.QUEUED, tries=0, due_at=timezone.now(), finished_at=None
        )
        if updated:
            transaction.on_commit(partial(queue_follow_up, follow_up_id), robust=True)
    return bool(updated)


# -- the sweeper's pass ----------------------------------------------------------------------


def requeue_lost(now: datetime, *, stalled_after: float, waiting: set[str] | None) -> int:
    """Queue again what no task will run: runs past their timeout (a killed worker), and
    tries queued ``stalled_after`` seconds ago with no task in the broker and no schedule.
    Returns how many."""
    moved = 0
    stuck_before = now - timedelta(seconds=settings.follow_up_timeout + settings.sweep_seconds)
    stuck = FollowUp.objects.filter(state=State.RUNNING, started_at__lt=stuck_before)
    for pk in list(stuck.values_list("pk", flat=True)):
        moved += _take_back(pk, stuck_before)
    if waiting is None:  # the broker cannot be read: only the stuck runs are safe to judge
        return moved
    cutoff = now - timedelta(seconds=stalled_after)
    stalled = FollowUp.objects.filter(state=State.QUEUED, due_at__lt=cutoff)
    for row in list(stalled):
        name = next_task_name(row)
        if name in waiting or queue.follow_up_is_scheduled(name):
            continue
        events.emit(Event.FOLLOW_UP_RESUMED, **_fields(row), reason="no task queued")
        moved += queue_follow_up(row.pk)
    return moved


def _take_back(pk: int, stuck_before: datetime) -> bool:
    """A run that never reported back: its transaction rolled back, so it did nothing."""
    with transaction.atomic():
        row = (
            FollowUp.objects.select_for_update(skip_locked=True)  # a live run holds its row
            .filter(pk=pk, state=State.RUNNING, started_at__lt=stuck_before)
            .first()
        )
        if row is None:
            return False
        last = row.tries > len(settings.follow_up_retry_delays)
        row.state = State.FAILED if last else State.QUEUED
        row.error = "the follow-up never reported back (worker stopped?)"
        row.due_at = timezone.now()
        row.save(update_fields=["state", "error", "due_at"])
        if not last:
            transaction.on_commit(partial(queue_follow_up, row.pk), robust=True)
    events.emit(Event.FOLLOW_UP_RESUMED, **_fields(row), reason="run lost", failed=last)
    return True
