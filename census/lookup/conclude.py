"""After an attempt: apply the retry policy to the attempt's report and move the lookup.

Called by the result hook (with the task id, which must be the one that claimed the
attempt) and by the sweeper (without). Idempotent: a lookup moves once per attempt.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from census import events, followups
from census.cedula import scrub
from census.conf import settings
from census.events import Event
from census.gate.waiter import GateWaiter
from census.lookup import policy
from census.lookup.report import REASON_KEY, raw_cedula
from census.lookup.results import changed_fields, result_of
from census.lookup.status import locked, transition
from census.models import ANSWER_FIELDS, Attempt, CedulaInfo, Status
from census.outcomes import (
    AnswerReason,
    Outcome,
    is_capacity,
    is_captcha_service,
    is_captcha_token,
    is_daily_limit,
    is_own_slowness,
)
from census.q2.queue import schedule_attempt


def conclude_attempt(lookup_id: int, step: int, *, task_id: str | None = None) -> bool:
    """Apply the retry policy to a reported attempt; idempotent. True if it moved the lookup.

    ``task_id``: the hook's task, which must be the one that claimed the attempt; the sweeper
    passes None.
    """
    with locked(lookup_id) as info:
        row = Attempt.objects.filter(lookup_id=lookup_id, step=step).first()
        refused = _not_concludable(info, row, step, task_id)
        if refused:
            events.emit(
                Event.ATTEMPT_IGNORED,
                lookup_id=lookup_id,
                step=step,
                reason=refused,
                status=info.status if info else None,
            )
            return False
        assert info is not None and row is not None
        outcome = Outcome(row.outcome)
        if outcome is Outcome.DEFERRED and is_own_slowness(row.error) and _slow_too_often(info):
            # This host cannot drive a browser at all: stop waiting for it, charge it.
            outcome = Outcome.TIMEOUT
        decision = policy.decide(
            outcome,
            info.retry_count,
            max_attempts=settings.max_attempts,
            delays=settings.retry_delays,
            retry_after=row.retry_after,
            deferred_s=info.deferred_s,
            max_defer=settings.max_defer_seconds,
            answer_reason=_answer_reason(row),
            bounded=not (is_daily_limit(row.error) or is_capacity(row.error)),
        )
        if isinstance(decision, policy.Defer) and not _defer(info, row, decision.delay):
            decision = policy.Finish(status=Status.ERROR, reason=Outcome.BLOCKED, exhausted=True)
        if isinstance(decision, policy.Finish) and _captcha_service(row):
            # Deferred past the bound because the solving service could not serve the
            # account: the captcha was never passed.
            decision = policy.Finish(
                status=decision.status, reason=Outcome.CAPTCHA_FAILED, exhausted=True
            )
        if isinstance(decision, policy.Finish) and _site_changed(row):
            # Deferred past the bound because the site's pages changed, not because it blocked.
            decision = policy.Finish(
                status=decision.status, reason=Outcome.UNEXPECTED_PAGE, exhausted=True
            )
        if isinstance(decision, policy.Retry):
            _retry(info, decision.delay)
        elif isinstance(decision, policy.Finish):
            _finish(info, decision, row)
    return True


def _not_concludable(
    info: CedulaInfo | None, row: Attempt | None, step: int, task_id: str | None
) -> str:
    """Why this attempt cannot be concluded now ("" when it can)."""
    if info is None or info.step != step or info.status != Status.SCRAPING:
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
    next_step = info.step + 1
    transition(
        info,
        Status.RETRYING,
        step=info.step,
        fields={
            "step": next_step,
            "retry_count": info.retry_count + 1,
            "last_retry_scheduled_at": now,
            "next_attempt_at": due,
        },
        log={"delay_s": delay, "due_at": due.isoformat()},
    )
    # Same transaction as the status: with the ORM broker both commit or neither does.
    schedule_attempt(info.pk, next_step, due)


def _defer(info: CedulaInfo, row: Attempt, delay: float) -> bool:
    """Wait for the gate: the same budget step runs again at the lookup's place in line.

    False (nothing changed) when that place is past the lookup's deferral bound
    (``CENSUS_MAX_DEFER_SECONDS``): however long the cursor, the bound holds.
    """
    left = settings.max_defer_seconds - info.deferred_s
    # Waits of this host's own (busy or slow browsers, a token still being solved) come
    # back after their delay, off the gate's cursor: they sent nothing and hold no place in
    # the site's line. The day's spent solves wait for the next day, past the bound; a class
    # past its share waits for its turn, however long the others take.
    local = is_own_slowness(row.error) or is_captcha_token(row.error)
    unbounded = is_daily_limit(row.error) or is_capacity(row.error)
    if is_capacity(row.error) and info.work_class != row.work_class:
        # Its class changed while the attempt decided (mark_verified): the wait was not its.
        waited: float | None = 0.0
    elif unbounded:
        waited = delay
    elif local:
        waited = delay if delay <= left else None
    else:
        waited = GateWaiter().place_deferred(delay, at_most=left)
    if waited is None:
        return False
    # The place is on the gate's clock; the schedule's due time is on this host's, as every
    # other time on the lookup's row.
    now = timezone.now()
    due = now + timedelta(seconds=waited)
    reason = row.error.split(":", 1)[0] or "gate_closed"
    next_step = info.step + 1
    transition(
        info,
        Status.RETRYING,
        step=info.step,
        fields={
            "step": next_step,
            "next_attempt_at": due,
            "deferred_s": info.deferred_s + (0.0 if unbounded else waited),
            "ticketed": not (local or unbounded),
        },
        log={"delay_s": round(waited, 3), "due_at": due.isoformat(), "deferred": True},
    )
    transaction.on_commit(
        partial(
            events.emit,
            Event.ATTEMPT_DEFERRED,
            lookup_id=info.pk,
            step=row.step,
            until=due.isoformat(),
            reason=reason,
        ),
        robust=True,
    )
    schedule_attempt(info.pk, next_step, due)
    return True


def _answer_reason(row: Attempt) -> AnswerReason | None:
    """What the attempt's answer said beyond its outcome, as its report stored it."""
    value = row.answer.get(REASON_KEY) if isinstance(row.answer, dict) else None
    try:
        return AnswerReason(value) if value else None
    except ValueError:  # a report written by a newer census: its outcome still holds
        return None


def _captcha_service(row: Attempt) -> bool:
    """Was this attempt deferred because the solving service could not serve it?"""
    return row.outcome == Outcome.DEFERRED and is_captcha_service(row.error)


def _site_changed(row: Attempt) -> bool:
    """Was this attempt deferred because the site counts as changed?"""
    return row.outcome == Outcome.DEFERRED and row.error.startswith("site_changed:")


def _slow_too_often(info: CedulaInfo) -> bool:
    """More uncharged own-slowness deferrals in this budget than it has attempts."""
    rows = Attempt.objects.filter(
        lookup=info, step__gte=info.budget_start, outcome=Outcome.DEFERRED
    ).values_list("error", flat=True)
    return sum(is_own_slowness(error) for error in rows) > settings.max_attempts


def _bounded(name: str, value: object) -> str:
    """``value`` cut to the length of ``CedulaInfo.<name>``."""
    limit = getattr(CedulaInfo._meta.get_field(name), "max_length", None) or 0
    return str(value or "")[:limit]


def _finish(info: CedulaInfo, decision: policy.Finish, row: Attempt) -> None:
    answer = row.answer if isinstance(row.answer, dict) else {}
    fields: dict[str, Any] = {name: _bounded(name, answer.get(name)) for name in ANSWER_FIELDS}
    fields.update(final_reason=_bounded("final_reason", decision.reason), next_attempt_at=None)
    fields["raw_response"] = (
        _error_details(info, decision, row) if decision.status == Status.ERROR else ""
    )
    transition(
        info,
        decision.status,
        step=info.step,
        fields=fields,
        log={
            "reason": decision.reason,
            "exhausted": decision.exhausted,
            # Seconds from registration to this final status: charts time-to-final.
            "age_s": round((timezone.now() - info.created_at).total_seconds(), 3),
        },
    )
    if info.previous_result:
        _report_change(info)
    # Same transaction as the final status: the chain exists if and only if the status does.
    followups.plan(info)


def _report_change(info: CedulaInfo) -> None:
    """A re-check that answers differently: ``lookup_result_changed`` with what changed."""
    previous, current = info.previous_result, result_of(info)
    changed = changed_fields(previous, current)
    if not changed:
        return
    transaction.on_commit(
        partial(
            events.emit,
            Event.LOOKUP_RESULT_CHANGED,
            lookup_id=info.pk,
            user_id=info.user_id,
            changed=changed,
            previous={name: previous.get(name) for name in changed},
            current={name: current[name] for name in changed},
            previous_finished_at=previous.get("finished_at"),
        ),
        robust=True,
    )


def _error_details(info: CedulaInfo, decision: policy.Finish, row: Attempt) -> str:
    """Every counted attempt of the budget, one line each, bounded by the settings' limit."""
    rows = Attempt.objects.filter(lookup=info, step__gte=info.budget_start).order_by("step")
    counted = [r for r in rows if r.outcome != Outcome.DEFERRED]
    deferred = len(rows) - len(counted)
    if row.outcome == Outcome.DEFERRED:
        why = (
            "the census site's pages had changed"
            if _site_changed(row)
            else "the census site blocked automated traffic"
        )
        head = (
            f"gave up: deferred {info.deferred_s:.0f} s in total (over CENSUS_MAX_DEFER_SECONDS)"
            f" while {why}"
        )
    elif decision.exhausted:
        head = f"gave up after {info.retry_count + 1} attempt(s): {decision.reason}"
    else:
        head = f"permanent error: {decision.reason}"
    lines = [head]
    lines += [f"step {r.step}: {r.outcome or '?'} {r.error}".rstrip() for r in counted]
    if deferred:
        lines.append(f"deferred {deferred} time(s), {info.deferred_s:.0f} s in total")
    text = scrub("\n".join(lines), raw_cedula(info))
    limit = settings.raw_response_limit
    return text if len(text) <= limit else text[: limit - 1] + "…"
