"""The lookup pipeline: registration -> attempts on Django-Q2 -> a final status.

- ``start_lookup`` (from the user ``post_save`` receiver) creates the lookup and queues attempt 1
  once the registration commits.
- ``run_attempt`` is the Django-Q2 task: it claims the attempt, calls the scraper and writes
  the attempt's full report (outcome, census data, detail, retry_after) to its ``Attempt``
  row before returning. The row, not Django-Q2's pickled result, is the durable report.
- ``conclude_attempt`` (from the result hook, or the sweeper) reads that row and applies the
  retry policy: it finalises the lookup, moves it to RETRYING and ``schedule()``\\ s the next
  attempt, or defers it (the gate was closed: no budget spent).
- ``request_refresh`` lets a leader start a fresh attempt budget.

Every status change goes through ``census.transitions.transition``. An attempt is claimed by one
Django-Q2 task (``Attempt.task_id``); only that task's hook may conclude it, and a second
delivery of the same task finds it claimed and does nothing.
"""

from __future__ import annotations

import time
import traceback
from contextvars import ContextVar
from dataclasses import asdict
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from census import events, logs, policy
from census.cedula import InvalidCedula, mask, normalize, scrub
from census.conf import settings
from census.events import Event
from census.gate import clamp_seconds
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome
from census.queue import GROUP, HOOK, TASK_FUNC, enqueue_attempt, schedule_attempt, task_name
from census.ratelimit import RateGate, policy_from_settings
from census.scraper import LookupResult, Scraper
from census.transitions import TransitionRefused, locked, log_created, transition

__all__ = [
    "GROUP",
    "HOOK",
    "TASK_FUNC",
    "ScraperCrashed",
    "conclude_attempt",
    "enqueue_attempt",
    "queue_now",
    "record_failure",
    "request_refresh",
    "run_attempt",
    "schedule_attempt",
    "start_lookup",
    "task_name",
]

#: Django-Q2 sets this (``pre_execute``) so an attempt can record its own task id.
current_task_id: ContextVar[str] = ContextVar("census_current_task_id", default="")

#: Characters of error text kept on an attempt row (its column's length).
ERROR_CHARS = 500
#: Characters of a crash's traceback kept on an attempt row.
TRACEBACK_CHARS = 8000


class ScraperCrashed(RuntimeError):
    """The scraper raised; the message is scrubbed of the cédula before Django-Q2 stores it."""


# -- registration ---------------------------------------------------------------------------


def start_lookup(user: Any) -> CedulaInfo:
    """Create the user's lookup in PENDING; attempt 1 is queued when the transaction commits."""
    info = CedulaInfo.objects.create(user=user, status=Status.PENDING)
    # robust: a failing enqueue must not break the registration; the sweeper resumes it.
    transaction.on_commit(partial(_queue_first_attempt, info), robust=True)
    return info


def _queue_first_attempt(info: CedulaInfo) -> None:
    # Logged here, not in the transaction: a rolled-back registration must leave no event.
    log_created(info)
    queue_now(info.pk, info.attempt)


def queue_now(lookup_id: int, attempt: int) -> bool:
    """Queue an attempt; on failure log it (the sweeper resumes the lookup) and return False."""
    try:
        enqueue_attempt(lookup_id, attempt)
    except Exception:
        events.emit(Event.ENQUEUE_FAILED, lookup_id=lookup_id, attempt=attempt)
        return False
    return True


# -- the task -------------------------------------------------------------------------------


def run_attempt(lookup_id: int, attempt: int) -> dict[str, Any]:
    """Django-Q2 task: run one attempt of one lookup; returns a small, JSON-safe summary."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(lookup_id=lookup_id, attempt=attempt)
    try:
        return _run_attempt(lookup_id, attempt, current_task_id.get())
    finally:  # the worker's later log lines are not about this lookup
        structlog.contextvars.clear_contextvars()


def _run_attempt(lookup_id: int, attempt: int, task_id: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"lookup_id": lookup_id, "attempt": attempt}
    claimed = _claim(lookup_id, attempt, task_id)
    if claimed is None:
        return {**summary, "outcome": None, "skipped": True}
    raw_cedula, ticketed = claimed
    started = time.monotonic()
    try:
        result = _lookup(raw_cedula, ticketed)
    except Exception as exc:  # a bug, not a site failure: kept as data, logged, retried
        detail = scrub(f"{type(exc).__name__}: {exc}", raw_cedula)
        crashed = LookupResult(outcome=Outcome.TASK_FAILED, detail=detail)
        _write_report(lookup_id, attempt, task_id, crashed, raw_cedula, started)
        _store_crash(lookup_id, attempt, task_id, exc, raw_cedula)
        with logs.scrubbing(raw_cedula):
            events.emit(Event.ATTEMPT_CRASHED, error_class=_class_path(exc))
        raise ScraperCrashed(detail[:ERROR_CHARS]) from None  # the cause may echo the cédula
    _write_report(lookup_id, attempt, task_id, result, raw_cedula, started)
    return {**summary, "outcome": result.outcome.value}


def _claim(lookup_id: int, attempt: int, task_id: str) -> tuple[str, bool] | None:
    """Move the lookup to SCRAPING for ``attempt``; its raw cédula and whether it was deferred.

    None when the work is stale, or this task already claimed the attempt (a redelivery).
    """
    with locked(lookup_id) as info:
        if info is None:
            events.emit(Event.ATTEMPT_IGNORED, reason="lookup_deleted")
            return None
        row = Attempt.objects.filter(lookup=info, number=attempt).first()
        if info.status == Status.SCRAPING and row is not None and row.task_id == task_id:
            events.emit(Event.ATTEMPT_IGNORED, reason="duplicate delivery", status=info.status)
            return None
        try:
            transition(info, Status.SCRAPING, attempt=attempt)
        except TransitionRefused as refused:
            events.emit(Event.ATTEMPT_IGNORED, reason=str(refused), status=info.status)
            return None
        previous = (
            Attempt.objects.filter(lookup=info, number__lt=attempt).order_by("-number").first()
        )
        ticketed = previous is not None and previous.outcome == Outcome.DEFERRED
        # Only scheduled attempts have a due time; lateness is measured against it.
        due = info.next_attempt_at if (info.retry_count or ticketed) else None
        Attempt.objects.update_or_create(
            lookup=info,
            number=attempt,
            defaults={
                "due_at": due,
                "started_at": timezone.now(),
                "task_id": task_id,
                "outcome": "",
                "finished_at": None,
                "sent": False,
            },
        )
        raw_text = _raw_cedula(info)
    events.emit(Event.ATTEMPT_STARTED, user_id=info.user_id, cedula=mask(raw_text))
    return raw_text, ticketed


def _raw_cedula(info: CedulaInfo) -> str:
    """The user's cédula as stored (``CENSUS_CEDULA_FIELD``), or "" when it has none."""
    raw = getattr(info.user, settings.cedula_field, None)
    return "" if raw is None else str(raw)


def _lookup(raw_cedula: str, ticketed: bool) -> LookupResult:
    if not raw_cedula.strip():
        return LookupResult(outcome=Outcome.MISSING_CEDULA, detail="the user has no cédula")
    try:
        cedula = normalize(raw_cedula)
    except InvalidCedula as invalid:
        return LookupResult(outcome=Outcome.INVALID_CEDULA, detail=str(invalid))
    gate = RateGate(policy=policy_from_settings(), ticketed=ticketed)
    scraper: Scraper = import_string(settings.scraper_path)(
        gate=gate, config=settings.scraper_config()
    )
    return scraper.lookup(cedula)


def _write_report(
    lookup_id: int,
    attempt: int,
    task_id: str,
    result: LookupResult,
    raw_cedula: str,
    started: float,
) -> None:
    """Store the attempt's whole outcome on its row, which only its claiming task may fill."""
    duration_ms = int((time.monotonic() - started) * 1000)
    outcome = result.outcome
    detail = scrub(result.detail, raw_cedula)
    answer: dict[str, Any] = {}
    if result.place is not None:
        answer.update(asdict(result.place))
    if result.novedad is not None:
        answer.update(asdict(result.novedad))
    retry_after = (
        None
        if result.retry_after is None
        else clamp_seconds(result.retry_after, settings.max_retry_after_seconds)
    )
    Attempt.objects.filter(lookup_id=lookup_id, number=attempt, task_id=task_id, outcome="").update(
        outcome=outcome.value,
        finished_at=timezone.now(),
        duration_ms=duration_ms,
        error="" if outcome.is_answer else detail[:ERROR_CHARS],
        sent=bool(result.meta.get("sent")),
        answer={key: scrub(str(value), raw_cedula)[:200] for key, value in answer.items()},
        retry_after=retry_after,
    )
    events.emit(
        Event.ATTEMPT_FINISHED,
        outcome=outcome.value,
        duration_ms=duration_ms,
        retriable=outcome.retriable,
    )


def _class_path(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _store_crash(
    lookup_id: int, attempt: int, task_id: str, exc: BaseException, raw_cedula: str
) -> None:
    """The exception's class and its scrubbed, bounded traceback on the attempt row."""
    text = scrub("".join(traceback.format_exception(exc)), raw_cedula)
    if len(text) > TRACEBACK_CHARS:  # keep the end: the innermost frames and the message
        text = "…" + text[-(TRACEBACK_CHARS - 1) :]
    Attempt.objects.filter(lookup_id=lookup_id, number=attempt, task_id=task_id).update(
        error_class=_class_path(exc)[:200], traceback=text
    )


def record_failure(lookup_id: int, attempt: int, task_id: str, message: str) -> None:
    """The task failed without writing its report (Django-Q2's timeout, a crash of ours)."""
    info = CedulaInfo.objects.filter(pk=lookup_id).select_related("user").first()
    if info is None:
        return
    # On failure Django-Q2 stores "message : traceback"; keep the message's last line.
    text = message.split(" : Traceback", 1)[0].strip()
    line = text.splitlines()[-1] if text else "task failed"
    Attempt.objects.filter(lookup_id=lookup_id, number=attempt, task_id=task_id, outcome="").update(
        outcome=Outcome.TASK_FAILED.value,
        finished_at=timezone.now(),
        error=scrub(line, _raw_cedula(info))[:ERROR_CHARS],
    )


# -- after the attempt ----------------------------------------------------------------------


def conclude_attempt(lookup_id: int, attempt: int, *, task_id: str | None = None) -> bool:
    """Apply the retry policy to a reported attempt; idempotent. True if it moved the lookup.

    ``task_id``: the hook's task, which must be the one that claimed the attempt; the sweeper
    passes None.
    """
    with locked(lookup_id) as info:
        row = Attempt.objects.filter(lookup_id=lookup_id, number=attempt).first()
        refused = _not_concludable(info, row, attempt, task_id)
        if refused:
            events.emit(
                Event.ATTEMPT_IGNORED,
                lookup_id=lookup_id,
                attempt=attempt,
                reason=refused,
                status=info.status if info else None,
            )
            return False
        assert info is not None and row is not None
        decision = policy.decide(
            Outcome(row.outcome),
            info.retry_count + 1,
            max_attempts=settings.max_attempts,
            delays=settings.retry_delays,
            retry_after=row.retry_after,
            max_retry_after=settings.max_retry_after_seconds,
            deferred_s=info.deferred_s,
            max_defer=settings.max_defer_seconds,
        )
        if isinstance(decision, policy.Retry):
            _retry(info, decision.delay)
        elif isinstance(decision, policy.Defer):
            _defer(info, row, decision.delay)
        else:
            _finish(info, decision, row)
    return True


def _not_concludable(
    info: CedulaInfo | None, row: Attempt | None, attempt: int, task_id: str | None
) -> str:
    """Why this attempt cannot be concluded now ("" when it can)."""
    if info is None or info.attempt != attempt or info.status != Status.SCRAPING:
        return "not the attempt in flight"
    if row is None:
        return "no attempt row"
    if task_id is not None and row.task_id != task_id:
        return "claimed by another task"
    if not row.outcome:
        return "no report yet"
    return ""


def _retry(info: CedulaInfo, delay: float) -> None:
    now = timezone.now()
    due = now + timedelta(seconds=delay)
    next_attempt = info.attempt + 1
    transition(
        info,
        Status.RETRYING,
        attempt=info.attempt,
        fields={
            "attempt": next_attempt,
            "retry_count": info.retry_count + 1,
            "last_retry_scheduled_at": now,
            "next_attempt_at": due,
        },
        log={"delay_s": delay, "due_at": due.isoformat()},
    )
    # Same transaction as the status: with the ORM broker both commit or neither does.
    schedule_attempt(info.pk, next_attempt, due)


def _defer(info: CedulaInfo, row: Attempt, delay: float) -> None:
    """Wait for the gate: the same budget step runs again at the lookup's place in line."""
    now = timezone.now()
    due = RateGate().place_deferred(now + timedelta(seconds=delay))
    waited = (due - now).total_seconds()
    reason = row.error.split(":", 1)[0] or "gate_closed"
    next_attempt = info.attempt + 1
    transition(
        info,
        Status.RETRYING,
        attempt=info.attempt,
        fields={
            "attempt": next_attempt,
            "next_attempt_at": due,
            "deferred_s": info.deferred_s + waited,
        },
        log={"delay_s": round(waited, 3), "due_at": due.isoformat(), "deferred": True},
    )
    transaction.on_commit(
        partial(
            events.emit,
            Event.ATTEMPT_DEFERRED,
            lookup_id=info.pk,
            attempt=row.number,
            until=due.isoformat(),
            reason=reason,
        ),
        robust=True,
    )
    schedule_attempt(info.pk, next_attempt, due)


def _bounded(name: str, value: object) -> str:
    """``value`` cut to the length of ``CedulaInfo.<name>``."""
    limit = getattr(CedulaInfo._meta.get_field(name), "max_length", None) or 0
    return str(value or "")[:limit]


_ANSWER_FIELDS = (
    "departamento",
    "municipio",
    "puesto",
    "direccion",
    "mesa",
    "novedad",
    "resolucion",
    "fecha_novedad",
)


def _finish(info: CedulaInfo, decision: policy.Finish, row: Attempt) -> None:
    answer = row.answer if isinstance(row.answer, dict) else {}
    fields: dict[str, Any] = {name: _bounded(name, answer.get(name)) for name in _ANSWER_FIELDS}
    fields.update(final_reason=_bounded("final_reason", decision.reason), next_attempt_at=None)
    fields["raw_response"] = (
        _error_details(info, decision, row) if decision.status == Status.ERROR else ""
    )
    transition(
        info,
        decision.status,
        attempt=info.attempt,
        fields=fields,
        log={
            "reason": decision.reason,
            "exhausted": decision.exhausted,
            # Seconds from registration to this final status: charts time-to-final.
            "age_s": round((timezone.now() - info.created_at).total_seconds(), 3),
        },
    )


def _error_details(info: CedulaInfo, decision: policy.Finish, row: Attempt) -> str:
    """Every counted attempt of the budget, one line each, bounded by the settings' limit."""
    rows = Attempt.objects.filter(lookup=info, number__gte=info.budget_start).order_by("number")
    counted = [r for r in rows if r.outcome != Outcome.DEFERRED]
    deferred = len(rows) - len(counted)
    if row.outcome == Outcome.DEFERRED:
        head = (
            f"gave up: deferred {info.deferred_s:.0f} s in total (over CENSUS_MAX_DEFER_SECONDS)"
            " while the census site blocked automated traffic"
        )
    elif decision.exhausted:
        head = f"gave up after {info.retry_count + 1} attempt(s): {decision.reason}"
    else:
        head = f"permanent error: {decision.reason}"
    lines = [head]
    lines += [f"attempt {r.number}: {r.outcome or '?'} {r.error}".rstrip() for r in counted]
    if deferred:
        lines.append(f"deferred {deferred} time(s), {info.deferred_s:.0f} s in total")
    text = scrub("\n".join(lines), _raw_cedula(info))
    limit = settings.raw_response_limit
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- manual refresh -------------------------------------------------------------------------


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
