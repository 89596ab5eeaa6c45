"""The Django-Q2 task: claim one attempt of one lookup, run the scraper, write the report.

The report goes to the attempt's ``Attempt`` row (``census.lookup.report``) before the task
returns. An attempt is claimed by one task id (``Attempt.task_id``); a second delivery of
that task sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import structlog
from django.utils import timezone
from django.utils.module_loading import import_string

from census import database, events, logs
from census.captcha import pool as captcha_pool
from census.cedula import InvalidCedula, mask, normalize, scrub
from census.conf import settings
from census.events import Event
from census.exceptions import CensusError
from census.gate import pause
from census.gate.waiter import GateWaiter, policy_from_settings
from census.lookup import capacity, report
from census.lookup.status import TransitionRefused, locked, transition
from census.models import Attempt, Status
from census.observability import snapshots
from census.outcomes import Outcome
from census.q2.context import current_task_id
from census.scraper import LookupResult, Scraper


class Claimed(NamedTuple):
    """What a claimed step needs: the raw cédula, its place on the gate, its retry count,
    its work class (what share of the site it may use)."""

    raw_cedula: str
    ticketed: bool
    retry_count: int
    work_class: str = ""


class ScraperCrashed(CensusError, RuntimeError):
    """The scraper raised; the message is scrubbed of the cédula before Django-Q2 stores it."""


# -- the task -------------------------------------------------------------------------------


def run_attempt(lookup_id: int, step: int) -> dict[str, Any]:
    """Django-Q2 task: run one attempt of one lookup; returns a small, JSON-safe summary."""
    with events.about(lookup_id, step):
        return _run_attempt(lookup_id, step, current_task_id.get())


def _run_attempt(lookup_id: int, step: int, task_id: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"lookup_id": lookup_id, "step": step}
    if database.retrying(pause.current, operation="pause") is not None:
        # Nothing claimed, nothing sent: the lookup waits as it is for census_resume.
        events.emit(Event.ATTEMPT_HELD, reason="paused")
        return {**summary, "outcome": None, "skipped": True, "paused": True}
    # Every database step survives a dropped connection (reconnect, bounded retries): a
    # drop must neither lose the claim nor an answer the site gave.
    tries: list[int] = []

    def claim() -> Claimed | None:
        tries.append(1)  # a retry may find the claim its lost connection committed
        return _claim(lookup_id, step, task_id, again=len(tries) > 1)

    claimed = database.retrying(claim, operation="claim")
    if claimed is None:
        return {**summary, "outcome": None, "skipped": True}
    # Every line from here on says how many retries of the budget came before, beside the
    # step, and has this cédula masked (census's events and other libraries' lines alike).
    with (
        structlog.contextvars.bound_contextvars(retry_count=claimed.retry_count),
        logs.scrubbing(claimed.raw_cedula),
    ):
        return _run_claimed(lookup_id, step, task_id, claimed, summary)


def _run_claimed(
    lookup_id: int, step: int, task_id: str, claimed: Claimed, summary: dict[str, Any]
) -> dict[str, Any]:
    raw_cedula = claimed.raw_cedula
    started = time.monotonic()
    try:
        result = _lookup(
            raw_cedula,
            claimed.ticketed,
            partial(report.mark_sent, lookup_id, step, task_id),
            work_class=claimed.work_class,
            lookup_id=lookup_id,
            step=step,
        )
    except Exception as exc:  # a bug, not a site failure: kept as data, logged, retried
        detail = scrub(f"{type(exc).__name__}: {exc}", raw_cedula)
        crashed = LookupResult(outcome=Outcome.TASK_FAILED, detail=detail)
        report.write_report(lookup_id, step, task_id, crashed, raw_cedula, started)
        report.store_crash(lookup_id, step, task_id, exc, raw_cedula)
        events.emit(Event.ATTEMPT_CRASHED, error_class=report.class_path(exc))
        # from None: the cause may echo the cédula
        raise ScraperCrashed(detail[: report.ERROR_CHARS]) from None
    report.write_report(lookup_id, step, task_id, result, raw_cedula, started)
    if snapshots.signature_of(result):
        _keep_snapshot(result, lookup_id, step, raw_cedula)
    return {**summary, "outcome": result.outcome.value}


def _keep_snapshot(result: LookupResult, lookup_id: int, step: int, raw_cedula: str) -> None:
    """Count the answer's signature (and keep its page the first time); never fails the
    attempt, whose report is already written."""
    try:
        database.retrying(
            lambda: snapshots.keep(result, lookup_id=lookup_id, step=step, cedula=raw_cedula),
            operation="snapshot",
            seconds=5.0,
        )
    except Exception:
        events.emit(Event.SNAPSHOT_FAILED, signature=snapshots.signature_of(result))


def _claim(lookup_id: int, step: int, task_id: str, *, again: bool = False) -> Claimed | None:
    """Move the lookup to SCRAPING for ``step``; its raw cédula and whether it was deferred.

    None when the work is stale, or this task already claimed the step (a redelivery).
    ``again``: this process retries a claim whose connection dropped, perhaps after its
    commit: finding its own unreported claim, it goes on with it.
    """
    with locked(lookup_id) as info:
        if info is None:
            events.emit(Event.ATTEMPT_IGNORED, reason="lookup_deleted")
            return None
        row = Attempt.objects.filter(lookup=info, step=step).first()
        # A lookup coming back from the gate's cursor keeps its place in line (stored by
        # the deferral that placed it); one that only waited for this host's browser has none.
        ticketed = info.ticketed
        if info.status == Status.SCRAPING and row is not None and row.task_id == task_id:
            if again and not row.outcome and not row.sent:
                return Claimed(report.raw_cedula(info), ticketed, info.retry_count, info.work_class)
            events.emit(Event.ATTEMPT_IGNORED, reason="duplicate delivery", status=info.status)
            return None
        try:
            transition(info, Status.SCRAPING, step=step)
        except TransitionRefused as refused:
            events.emit(Event.ATTEMPT_IGNORED, reason=str(refused), status=info.status)
            return None
        # Only scheduled attempts have a due time; lateness is measured against it.
        due = info.next_attempt_at if (info.retry_count > 0 or ticketed) else None
        Attempt.objects.update_or_create(
            lookup=info,
            step=step,
            defaults={
                "due_at": due,
                "started_at": timezone.now(),
                "task_id": task_id,
                "outcome": "",
                "finished_at": None,
                "sent": False,
                "work_class": info.work_class,
            },
        )
        raw_text = report.raw_cedula(info)
    events.emit(
        Event.ATTEMPT_STARTED,
        user_id=info.user_id,
        retry_count=info.retry_count,
        cedula=mask(raw_text),
    )
    return Claimed(raw_text, ticketed, info.retry_count, info.work_class)


def _lookup(
    raw_cedula: str,
    ticketed: bool,
    on_sent: Callable[[], None],
    *,
    lookup_id: int,
    step: int,
    work_class: str = "",
) -> LookupResult:
    if not raw_cedula.strip():
        return LookupResult(
            outcome=Outcome.MISSING_CEDULA,
            detail="the user has no cédula "
            f"(CENSUS_CEDULA_FIELD = {settings.cedula_field!r} is empty)",
        )
    try:
        cedula = normalize(raw_cedula)
    except InvalidCedula as invalid:
        return LookupResult(outcome=Outcome.INVALID_CEDULA, detail=str(invalid))
    # Its class's share of the site, then a solved captcha token, both before any browser
    # opens (or why the lookup waits).
    waits = capacity.wait_for_share(lookup_id, work_class)
    if waits is not None:
        return waits
    held = captcha_pool.take(lookup_id, step)
    if isinstance(held, LookupResult):
        return held

    def sent() -> None:
        held.sent = True
        on_sent()

    gate = GateWaiter(policy=policy_from_settings(), ticketed=ticketed, on_sent=sent)
    scraper: Scraper = import_string(settings.scraper_path)(
        gate=gate, config=settings.scraper_config()
    )
    result: LookupResult | None = None
    try:
        with captcha_pool.holding(held):
            result = scraper.lookup(cedula)
    finally:  # a crash too: its token goes back to the pool, or is counted as wasted
        captcha_pool.settle(held, result)
    return result
