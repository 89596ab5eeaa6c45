"""The lookup pipeline: registration -> attempts on Django-Q2 -> a final status.

- ``start_lookup`` (from the user ``post_save`` receiver) creates the lookup and queues attempt 1
  once the registration commits.
- ``run_attempt`` is the Django-Q2 task: it claims the attempt, calls the scraper and returns an
  ``AttemptReport`` carrying no personal data.
- ``conclude_attempt`` (from the result hook, or the sweeper) applies the retry policy: it
  finalises the lookup, or moves it to RETRYING and ``schedule()``\\ s the next attempt.
- ``request_refresh`` lets a leader start a fresh attempt budget.

Every status change goes through ``census.transitions.transition``. Work for an attempt number
that is no longer current changes nothing, so duplicate deliveries and replayed hooks are safe.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from census import events, policy
from census.cedula import InvalidCedula, mask, normalize, scrub
from census.conf import settings
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome
from census.scraper import LookupResult, Novedad, Place, get_scraper
from census.transitions import TransitionRefused, locked, log_created, transition

TASK_FUNC = "census.pipeline.run_attempt"
HOOK = "census.hooks.attempt_finished"
GROUP = "census-lookup"

#: Django-Q2 sets this (``pre_execute``) so an attempt can record its own task id.
current_task_id: ContextVar[str] = ContextVar("census_current_task_id", default="")


@dataclass(frozen=True, kw_only=True)
class AttemptReport:
    """What a task returns to the hook: ids, the outcome and the census data; never a cédula."""

    lookup_id: int
    attempt: int
    outcome: Outcome | None = None
    place: Place | None = None
    novedad: Novedad | None = None
    detail: str = ""
    retry_after: float | None = None
    #: True when the task found the attempt stale or already running and did nothing.
    skipped: bool = False


class ScraperCrashed(RuntimeError):
    """The scraper raised; the message is scrubbed of the cédula before Django-Q2 stores it."""


def task_name(lookup_id: int, attempt: int) -> str:
    """Readable in qinfo, qmonitor and the admin: which lookup and attempt, never the cédula."""
    return f"census-lookup-{lookup_id}-attempt-{attempt}"


def _q_options(lookup_id: int, attempt: int) -> dict[str, Any]:
    return {
        "task_name": task_name(lookup_id, attempt),
        "group": GROUP,
        "hook": HOOK,
        # Our retries replace the broker's: a failed attempt must not be delivered again.
        "ack_failure": True,
        # Hooks only fire for saved results; keep them even when Q_CLUSTER save_limit < 0.
        "save": True,
        "timeout": settings.task_timeout,
    }


def enqueue_attempt(lookup_id: int, attempt: int) -> str:
    """Queue ``attempt`` of a lookup now; returns the Django-Q2 task id."""
    return async_task(TASK_FUNC, lookup_id, attempt, q_options=_q_options(lookup_id, attempt))


def schedule_attempt(lookup_id: int, attempt: int, due: Any) -> Schedule:
    """Record the next attempt as a ONCE schedule (shown in the admin's Scheduled tasks)."""
    # Only literals: Django-Q2 stores args/kwargs as text and reads them with literal_eval.
    return schedule(
        TASK_FUNC,
        lookup_id,
        attempt,
        name=task_name(lookup_id, attempt),
        hook=HOOK,
        schedule_type=Schedule.ONCE,
        next_run=due,
        q_options=_q_options(lookup_id, attempt),
    )


# -- registration ---------------------------------------------------------------------------


def start_lookup(user: Any) -> CedulaInfo:
    """Create the user's lookup in PENDING; attempt 1 is queued when the transaction commits."""
    info = CedulaInfo.objects.create(user=user, status=Status.PENDING)
    transaction.on_commit(partial(_queue_first_attempt, info))
    return info


def _queue_first_attempt(info: CedulaInfo) -> None:
    # Logged here, not in the transaction: a rolled-back registration must leave no event.
    log_created(info)
    enqueue_attempt(info.pk, info.attempt)


# -- the task -------------------------------------------------------------------------------


def run_attempt(lookup_id: int, attempt: int) -> AttemptReport:
    """Django-Q2 task: run one attempt of one lookup."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(lookup_id=lookup_id, attempt=attempt)
    try:
        return _run_attempt(lookup_id, attempt)
    finally:  # the worker's later log lines are not about this lookup
        structlog.contextvars.clear_contextvars()


def _run_attempt(lookup_id: int, attempt: int) -> AttemptReport:
    raw_cedula = _claim(lookup_id, attempt)
    if raw_cedula is None:
        return AttemptReport(lookup_id=lookup_id, attempt=attempt, skipped=True)
    started = time.monotonic()
    try:
        result = _lookup(raw_cedula)
    except Exception as exc:  # the scraper contract says never; a crash is still retried
        detail = scrub(f"{type(exc).__name__}: {exc}", str(raw_cedula))
        _record(lookup_id, attempt, Outcome.TASK_FAILED, detail, started)
        raise ScraperCrashed(detail) from None  # from None: the cause may echo the cédula
    detail = scrub(result.detail, str(raw_cedula))
    _record(lookup_id, attempt, result.outcome, detail, started)
    return AttemptReport(
        lookup_id=lookup_id,
        attempt=attempt,
        outcome=result.outcome,
        place=result.place,
        novedad=result.novedad,
        detail=detail,
        retry_after=result.retry_after,
    )


def _claim(lookup_id: int, attempt: int) -> str | None:
    """Move the lookup to SCRAPING for ``attempt``; return its raw cédula, or None if stale."""
    with locked(lookup_id) as info:
        if info is None:
            events.info(events.ATTEMPT_IGNORED, reason="lookup_deleted")
            return None
        try:
            transition(info, Status.SCRAPING, attempt=attempt)
        except TransitionRefused as refused:
            events.info(events.ATTEMPT_IGNORED, reason=str(refused), status=info.status)
            return None
        # Only scheduled retries have a due time; lateness is measured against it.
        due = info.next_attempt_at if info.retry_count else None
        Attempt.objects.update_or_create(
            lookup=info,
            number=attempt,
            defaults={
                "due_at": due,
                "started_at": timezone.now(),
                "task_id": current_task_id.get(),
            },
        )
        raw_text = _raw_cedula(info)
    events.info(events.ATTEMPT_STARTED, user_id=info.user_id, cedula=mask(raw_text))
    return raw_text


def _raw_cedula(info: CedulaInfo) -> str:
    """The user's cédula as stored (``CENSUS_CEDULA_FIELD``), or "" when it has none."""
    raw = getattr(info.user, settings.cedula_field, None)
    return "" if raw is None else str(raw)


def _lookup(raw_cedula: str) -> LookupResult:
    if not raw_cedula.strip():
        return LookupResult(outcome=Outcome.MISSING_CEDULA, detail="the user has no cédula")
    try:
        cedula = normalize(raw_cedula)
    except InvalidCedula as invalid:
        return LookupResult(outcome=Outcome.INVALID_CEDULA, detail=str(invalid))
    return get_scraper().lookup(cedula)


def _record(lookup_id: int, attempt: int, outcome: Outcome, detail: str, started: float) -> None:
    duration_ms = int((time.monotonic() - started) * 1000)
    Attempt.objects.filter(lookup_id=lookup_id, number=attempt).update(
        outcome=outcome.value,
        finished_at=timezone.now(),
        duration_ms=duration_ms,
        error="" if outcome.is_answer else detail[:500],
    )
    events.info(
        events.ATTEMPT_FINISHED,
        outcome=outcome.value,
        duration_ms=duration_ms,
        retriable=outcome.retriable,
    )


# -- after the attempt ----------------------------------------------------------------------


def conclude_attempt(report: AttemptReport, *, task_id: str = "") -> None:
    """Apply the retry policy to a finished attempt (from the hook or the sweeper). Idempotent."""
    with locked(report.lookup_id) as info:
        if info is None or info.attempt != report.attempt or info.status != Status.SCRAPING:
            events.info(
                events.ATTEMPT_IGNORED,
                lookup_id=report.lookup_id,
                attempt=report.attempt,
                reason="not the attempt in flight",
                status=info.status if info else None,
            )
            return
        outcome = report.outcome or Outcome.TASK_FAILED
        detail = scrub(report.detail, _raw_cedula(info))
        _finish_attempt_row(info, report.attempt, outcome, detail, task_id)
        decision = policy.decide(
            outcome,
            info.retry_count + 1,
            max_attempts=settings.max_attempts,
            delays=settings.retry_delays,
            retry_after=report.retry_after,
        )
        if isinstance(decision, policy.Retry):
            _retry(info, decision.delay)
        else:
            _finish(info, decision, report, detail)


def _finish_attempt_row(
    info: CedulaInfo, attempt: int, outcome: Outcome, detail: str, task_id: str
) -> None:
    """Fill what the task could not write itself (it failed, or its worker died)."""
    row = Attempt.objects.filter(lookup=info, number=attempt).first()
    if row is None:
        return
    changes: dict[str, Any] = {}
    if task_id and not row.task_id:
        changes["task_id"] = task_id
    if row.finished_at is None:
        now = timezone.now()
        changes.update(
            outcome=outcome.value,
            finished_at=now,
            duration_ms=int((now - row.started_at).total_seconds() * 1000),
            error=detail[:500],
        )
    if changes:
        Attempt.objects.filter(pk=row.pk).update(**changes)


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


def _finish(info: CedulaInfo, decision: policy.Finish, report: AttemptReport, detail: str) -> None:
    place = report.place or Place()
    novedad = report.novedad or Novedad()
    fields: dict[str, Any] = {
        "departamento": place.departamento,
        "municipio": place.municipio,
        "puesto": place.puesto,
        "direccion": place.direccion,
        "mesa": place.mesa,
        "novedad": novedad.novedad,
        "resolucion": novedad.resolucion,
        "fecha_novedad": novedad.fecha_novedad,
        "final_reason": decision.reason,
        "next_attempt_at": None,
        "raw_response": "",
    }
    if decision.status == Status.ERROR:
        fields["raw_response"] = _error_details(info, decision, detail)
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


def _error_details(info: CedulaInfo, decision: policy.Finish, detail: str) -> str:
    """Every attempt of the budget, one line each, bounded by ``CENSUS_RAW_RESPONSE_LIMIT``."""
    first = info.attempt - info.retry_count
    rows = Attempt.objects.filter(lookup=info, number__gte=first).order_by("number")
    lines = [
        f"gave up after {info.retry_count + 1} attempt(s): {decision.reason}"
        if decision.exhausted
        else f"permanent error: {decision.reason}",
        *(f"attempt {row.number}: {row.outcome or '?'} {row.error}".rstrip() for row in rows),
    ]
    if detail and detail not in lines[-1]:
        lines.append(detail)
    text = "\n".join(lines)
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
        events.warning(events.REFRESH_DENIED, lookup_id=info.pk, requested_by=requester_id)
        raise PermissionDenied("only leaders may request a new census lookup")
    with locked(info.pk) as current:
        if current is None or not current.current_status.is_final:
            events.info(
                events.REFRESH_SKIPPED,
                lookup_id=info.pk,
                requested_by=requester_id,
                status=current.status if current else None,
            )
            return False
        transition(
            current,
            Status.PENDING,
            attempt=current.attempt,
            fields={"attempt": current.attempt + 1, "retry_count": 0, "next_attempt_at": None},
            log={"requested_by": requester_id},
        )
        transaction.on_commit(partial(enqueue_attempt, current.pk, current.attempt))
    events.info(
        events.REFRESH_REQUESTED,
        lookup_id=info.pk,
        requested_by=requester_id,
        attempt=current.attempt,
    )
    info.refresh_from_db()
    return True
