"""Bulk lookups: a backfill or re-check of many members, fed to the queue at the site's pace.

A run (``BulkRun``) freezes its selection into member rows, then is *fed*: each feed starts
lookups (through ``census.lookup.refresh``, the same path as a leader's refresh) only while fewer
lookups are in flight than the cluster gets through in ``CENSUS_BULK_WINDOW_SECONDS``: what
the rate gate serves in it, or fewer when the workers, not the gate, set the pace (measured
from the attempts that finished lately, ``window_size``). The queue therefore never holds
more than about one window of work, so the ORM broker never redelivers prefetched tasks,
and a registration made during a run waits about one window behind it.
Feeding pauses while the breaker is open, and while lookups deferred by a block still wait
for their place on the gate's deferral cursor. One feeder at a time computes and fills the
window, cluster-wide; a selection has at most one open run.

A feed marks its members and starts their lookups in one transaction (the tasks are queued
on commit), so a killed feeder loses nothing and starts nothing twice; feeding the same run
again continues where it stopped. ``census_lookup`` feeds from the terminal; a background run
and the periodic re-check are fed by a Django-Q2 schedule (``census-bulk-<id>``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from census import events
from census.cedula import canonical
from census.conf import settings
from census.events import Event
from census.exceptions import CensusError
from census.gate.rules import GateState
from census.gate.store import GateStore
from census.gate.waiter import DEFAULT_NAME as GATE_NAME
from census.lookup.refresh import start_for_user
from census.models import (
    FINAL_STATUSES,
    Attempt,
    BulkMember,
    BulkRun,
    CedulaInfo,
    Status,
)
from census.outcomes import Outcome
from census.q2 import queue

FINAL_VALUES = tuple(sorted(status.value for status in FINAL_STATUSES))
IN_FLIGHT_VALUES = (Status.PENDING.value, Status.SCRAPING.value, Status.RETRYING.value)


class SelectionError(CensusError, ValueError):
    """A selection that cannot be run (its message says why; it never shows a cédula)."""


@dataclass(frozen=True)
class Selection:
    """Which members a run looks up.

    ``missing`` members (no lookup yet) plus those whose final lookup matches ``statuses``
    and ``older_than_s`` (both when given); ``user_ids`` (from a users file) limits the
    result, or alone selects those users whatever their lookup.
    """

    missing: bool = False
    statuses: tuple[str, ...] = ()
    older_than_s: float | None = None
    user_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.statuses) - set(FINAL_VALUES))
        if unknown:
            raise SelectionError(
                f"--status takes final statuses ({', '.join(FINAL_VALUES)}); "
                f"not {', '.join(unknown)}"
            )
        if not (self.missing or self.statuses or self.older_than_s or self.user_ids is not None):
            raise SelectionError(
                "choose members: --missing, --status, --older-than and/or --users-file"
            )

    @property
    def key(self) -> str:
        """A readable, cédula-free description; a run with the same key resumes the other."""
        parts = []
        if self.missing:
            parts.append("missing")
        if self.statuses:
            parts.append("status=" + ",".join(sorted(self.statuses)))
        if self.older_than_s:
            parts.append(f"older_than={self.older_than_s:g}s")
        if self.user_ids is not None:
            digest = hashlib.sha256(",".join(map(str, sorted(self.user_ids))).encode())
            parts.append(f"users={len(self.user_ids)}:{digest.hexdigest()[:12]}")
        return " ".join(parts)

    def user_pks(self, now: datetime | None = None) -> list[int]:
        """The selected users' primary keys, in order."""
        now = now or timezone.now()
        users = get_user_model().objects.all()
        wanted = Q(pk__in=[])
        if self.missing:
            wanted |= Q(cedula_info__isnull=True)
        if self.statuses or self.older_than_s:
            lookups = CedulaInfo.objects.filter(status__in=self.statuses or FINAL_VALUES)
            if self.older_than_s:
                lookups = lookups.filter(finished_at__lt=now - timedelta(seconds=self.older_than_s))
            wanted |= Q(pk__in=lookups.values("user_id"))
        if self.user_ids is not None:
            if self.missing or self.statuses or self.older_than_s:
                users = users.filter(wanted)
            users = users.filter(pk__in=self.user_ids)
        else:
            users = users.filter(wanted)
        return list(users.order_by("pk").values_list("pk", flat=True))


def read_users_file(lines: Iterable[str]) -> tuple[int, ...]:
    """User ids from lines holding a cédula (the user's cédula field) or a user id.

    Blank lines and ``#`` comments are skipped. A line that names no user fails the whole
    file (line numbers only in the message: no cédula), so nothing is half done.
    """
    user_model = get_user_model()
    field = settings.cedula_field
    ids: dict[int, None] = {}
    unknown: list[int] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        cedula = canonical(text)
        pk = None
        if cedula is not None:
            pk = user_model.objects.filter(**{field: cedula}).values_list("pk", flat=True).first()
        if pk is None and text.isdigit():
            pk = user_model.objects.filter(pk=int(text)).values_list("pk", flat=True).first()
        if pk is None:
            unknown.append(number)
        else:
            ids[int(pk)] = None
    if unknown:
        shown = ", ".join(map(str, unknown[:20])) + (" ..." if len(unknown) > 20 else "")
        raise SelectionError(
            f"{len(unknown)} line(s) of the users file name no user (lines {shown}); "
            "nothing was started"
        )
    return tuple(ids)


def read_users_path(path: str | Path) -> tuple[int, ...]:
    try:
        with open(path, encoding="utf-8") as handle:
            return read_users_file(handle)
    except (OSError, UnicodeDecodeError) as error:
        raise SelectionError(f"cannot read the users file: {error}") from None


# -- runs -----------------------------------------------------------------------------------


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


#: Attempts that finished within this many seconds (or the window, if longer) measure what
#: the cluster gets through: long enough to hold several lookups of a slow host.
THROUGHPUT_LOOKBACK_SECONDS = 60.0


def window_size(
    *, window_s: float, gate_capacity: int, finished: int, lookback_s: float, workers: int
) -> int:
    """Lookups the bulk window may hold: what the gate serves in it, and no more than the
    cluster finishes in it (``finished`` attempts in the last ``lookback_s``, scaled to the
    window) plus one per worker.

    Pure. The per-worker term keeps every worker busy while the measure is young (a run
    starting on an idle cluster), so the measure can grow to the cluster's true pace: with
    a lookup for each worker in flight, the attempts that finish are as many as the workers
    can do. Sized by the gate alone, a cluster slower than the gate would hold far more than
    a window of work, and a registration would wait behind all of it.
    """
    cluster = math.ceil(finished * window_s / lookback_s) + workers if lookback_s > 0 else 0
    return max(min(gate_capacity, cluster), 1)


def window_capacity(now: datetime | None = None) -> int:
    """``window_size`` for this cluster now: attempts of every host that finished in the
    lookback (deferrals left out: they hold no worker), this host's worker count."""
    now = now or timezone.now()
    lookback = max(settings.bulk_window_seconds, THROUGHPUT_LOOKBACK_SECONDS)
    finished = (
        Attempt.objects.filter(finished_at__gt=now - timedelta(seconds=lookback))
        .exclude(outcome=Outcome.DEFERRED.value)
        .count()
    )
    return window_size(
        window_s=settings.bulk_window_seconds,
        gate_capacity=settings.bulk_capacity,
        finished=finished,
        lookback_s=lookback,
        workers=settings.cluster_workers,
    )


def in_flight_window(now: datetime | None = None) -> int:
    """Lookups the gate must serve within the window: pending, scraping, due within it, or
    deferred.

    A lookup deferred by the closed gate (``retrying``, its last attempt ``deferred``) is in
    flight whatever its due time: it holds a place on the gate's deferral cursor, and every
    fresh lookup queues behind the cursor. Left out, each member fed while the cursor is
    ahead would be deferred at once and drop out of the window, so that the feeder could
    drain the whole run onto the cursor, ahead of every registration.
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.bulk_window_seconds)
    deferred = Attempt.objects.filter(
        lookup=OuterRef("pk"), step=OuterRef("step") - 1, outcome=Outcome.DEFERRED.value
    )
    return CedulaInfo.objects.filter(
        Q(status__in=(Status.PENDING, Status.SCRAPING))
        | Q(status=Status.RETRYING, next_attempt_at__lte=horizon)
        | Q(status=Status.RETRYING, next_attempt_at=None)
        | (Q(status=Status.RETRYING) & Exists(deferred))
    ).count()


def gate_now(now: datetime | None = None) -> tuple[GateState, datetime]:
    """The gate's state (from its row; no row: a fresh gate) and ``now`` (by default the
    database's clock, which the gate keeps its times on)."""
    state, db_now = GateStore(GATE_NAME, inline=True).read()
    return state, now or db_now


def deferred_ahead(state: GateState, now: datetime) -> bool:
    """Whether the gate's deferral cursor is later than ``now``.

    While it is, deferred lookups are still waiting for their places and the gate defers
    every fresh lookup behind them: a member fed now would only be deferred too, and a
    registration would land behind it.
    """
    return state.defer_cursor is not None and state.defer_cursor > now


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


def step(run_id: int) -> Progress | None:
    """One round of a feeder: feed, then see whether the run is over."""
    feed(run_id)
    return finish_if_done(run_id)


def feed_scheduled(run_id: int) -> dict[str, Any]:
    """The Django-Q2 task of a background run's schedule (``census-bulk-<id>``)."""
    state = step(run_id)
    if state is None or state.finished or state.cancelled:
        # Deleted, or closed by a path that left its feeder (finish and cancel remove it).
        queue.remove_feeder(run_id)
    return {} if state is None else asdict(state)


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


# -- periodic re-checks ---------------------------------------------------------------------


def next_recheck_at(now: datetime | None = None) -> datetime:
    """The next ``CENSUS_RECHECK_HOUR``:00 in the project's time zone."""
    local = timezone.localtime(now or timezone.now())
    due = local.replace(hour=settings.recheck_hour, minute=0, second=0, microsecond=0)
    return due if due > local else due + timedelta(days=1)


def sync_recheck_schedule(**kwargs: Any) -> None:
    """Install the daily re-check schedule when ``CENSUS_RECHECK_AFTER`` is set; else remove it.

    Runs after ``migrate`` and when a qcluster worker starts.
    """
    after = settings.recheck_after_seconds
    if queue.set_recheck_schedule(next_recheck_at() if after else None):
        events.emit(
            Event.RECHECK_SCHEDULE_SYNCED,
            installed=bool(after),
            recheck_after_s=after,
            hour=settings.recheck_hour,
        )


def start_recheck() -> dict[str, Any]:
    """The daily task: a background run re-checking final lookups older than the setting."""
    after = settings.recheck_after_seconds
    if not after:
        sync_recheck_schedule()
        return {"started": False}
    run, resumed = open_run(
        Selection(older_than_s=after),
        requested_by=None,
        kind=BulkRun.Kind.RECHECK,
        background=True,
    )
    return {"run_id": run.pk if run else None, "resumed": resumed}
