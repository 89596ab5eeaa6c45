"""The attempt report store: what an attempt did, on its ``Attempt`` row.

The task writes the report (outcome, census data, detail, retry_after, whether a request
was sent, a crash's traceback) before it returns; the hook, or the sweeper, concludes from
the row, never from Django-Q2's pickled result. Only the task that claimed an attempt
(``Attempt.task_id``) fills its row, once (``outcome`` still empty). Every text is scrubbed of
the cédula and bounded before it is stored.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict
from typing import Any

from django.db.models.functions import Now
from django.utils import timezone

from census import database, events
from census.cedula import scrub
from census.conf import settings
from census.events import Event
from census.limits import MAX_GATE_WAIT_SECONDS, clamp_seconds
from census.models import Attempt, CedulaInfo
from census.outcomes import Outcome
from census.scraper import LookupResult

#: The key of ``Attempt.answer`` that holds what the answer's wording says beyond its
#: outcome (``LookupResult.reason``); the lookup's ``final_reason`` when it ends on it.
REASON_KEY = "reason"
#: Characters of error text kept on an attempt row (its column's length).
ERROR_CHARS = 500
#: Characters of a crash's traceback kept on an attempt row.
TRACEBACK_CHARS = 8000
#: Seconds the report write retries a dropped database (inside the task's timeout margin).
REPORT_SECONDS = 20.0


def raw_cedula(info: CedulaInfo) -> str:
    """The user's cédula as stored (``CENSUS_CEDULA_FIELD``), or "" when it has none."""
    raw = getattr(info.user, settings.cedula_field, None)
    return "" if raw is None else str(raw)


def mark_sent(lookup_id: int, step: int, task_id: str) -> None:
    """The consulta left: say so on the attempt row at once, not only in the report."""
    Attempt.objects.filter(lookup_id=lookup_id, step=step, task_id=task_id, outcome="").update(
        sent=True, sent_at=Now()
    )


def write_report(
    lookup_id: int,
    step: int,
    task_id: str,
    result: LookupResult,
    cedula_text: str,
    started: float,
) -> None:
    """Store the attempt's whole outcome on its row, which only its claiming task may fill."""
    duration_ms = int((time.monotonic() - started) * 1000)
    outcome = result.outcome
    detail = scrub(result.detail, cedula_text)
    answer: dict[str, Any] = {}
    if result.place is not None:
        answer.update(asdict(result.place))
    if result.novedad is not None:
        answer.update(asdict(result.novedad))
    if result.reason is not None and outcome.is_answer:
        answer[REASON_KEY] = result.reason.value
    # A site's Retry-After is capped by CENSUS_MAX_RETRY_AFTER_SECONDS; a deferral's wait is
    # the gate's own, and the lookup's deferral bound judges it (a wait past the bound ends
    # the lookup): capped like a header, it woke a deferred lookup every few seconds to be
    # refused again.
    cap = MAX_GATE_WAIT_SECONDS if outcome is Outcome.DEFERRED else settings.max_retry_after_seconds
    retry_after = None if result.retry_after is None else clamp_seconds(result.retry_after, cap)
    report = Attempt.objects.filter(lookup_id=lookup_id, step=step, task_id=task_id, outcome="")
    fields: dict[str, Any] = {
        "outcome": outcome.value,
        "finished_at": timezone.now(),
        "duration_ms": duration_ms,
        "error": "" if outcome.is_answer else detail[:ERROR_CHARS],
        "answer": {key: scrub(str(value), cedula_text)[:200] for key, value in answer.items()},
        "retry_after": retry_after,
    }
    if result.meta.get("sent"):
        fields["sent"] = True  # never back to False: the gate may have marked it already
    # An answer the site gave is worth the wait: retry a dropped connection for the rest of
    # the task's time (the sweeper concludes from this row once it is written).
    database.retrying(lambda: report.update(**fields), operation="report", seconds=REPORT_SECONDS)
    events.emit(
        Event.ATTEMPT_FINISHED,
        outcome=outcome.value,
        duration_ms=duration_ms,
        retriable=outcome.retriable,
    )


def class_path(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def store_crash(
    lookup_id: int, step: int, task_id: str, exc: BaseException, cedula_text: str
) -> None:
    """The exception's class and its scrubbed, bounded traceback on the attempt row."""
    text = scrub("".join(traceback.format_exception(exc)), cedula_text)
    if len(text) > TRACEBACK_CHARS:  # keep the end: the innermost frames and the message
        text = "…" + text[-(TRACEBACK_CHARS - 1) :]
    Attempt.objects.filter(lookup_id=lookup_id, step=step, task_id=task_id).update(
        error_class=class_path(exc)[:200], traceback=text
    )


def record_failure(lookup_id: int, step: int, task_id: str, message: str) -> None:
    """The task failed without writing its report (Django-Q2's timeout, a crash of ours)."""
    info = CedulaInfo.objects.filter(pk=lookup_id).select_related("user").first()
    if info is None:
        return
    # On failure Django-Q2 stores "message : traceback"; keep the message's last line.
    text = message.split(" : Traceback", 1)[0].strip()
    line = text.splitlines()[-1] if text else "task failed"
    Attempt.objects.filter(lookup_id=lookup_id, step=step, task_id=task_id, outcome="").update(
        outcome=Outcome.TASK_FAILED.value,
        finished_at=timezone.now(),
        error=scrub(line, raw_cedula(info))[:ERROR_CHARS],
    )
