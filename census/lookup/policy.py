"""The retry policy: pure, (outcome, retry count) -> finish, retry after N seconds, or defer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from census.limits import MAX_DEFER_SECONDS
from census.models import ANSWER_STATUS, Status
from census.outcomes import AnswerReason, Outcome


@dataclass(frozen=True, kw_only=True)
class Finish:
    """End the lookup in ``status``; ``reason`` is the outcome that ended it, or what the
    answer's wording says beyond it (``AnswerReason``)."""

    status: Status
    reason: Outcome | AnswerReason
    #: True when a retriable failure ended the lookup because no attempt was left.
    exhausted: bool = False


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Run the next attempt ``delay`` seconds from now."""

    delay: float


@dataclass(frozen=True, kw_only=True)
class Defer:
    """The gate was closed: try the same budget step again ``delay`` seconds from now."""

    delay: float


Decision = Finish | Retry | Defer


def retry_delay(retry_count: int, delays: Sequence[float]) -> float:
    """Seconds before retry number ``retry_count + 1``: ``delays[min(retry_count, len-1)]``."""
    return float(delays[min(retry_count, len(delays) - 1)])


def decide(
    outcome: Outcome,
    retry_count: int,
    *,
    max_attempts: int,
    delays: Sequence[float],
    retry_after: float | None = None,
    deferred_s: float = 0.0,
    max_defer: float = MAX_DEFER_SECONDS,
    answer_reason: AnswerReason | None = None,
    bounded: bool = True,
) -> Decision:
    """What to do after a request to the site ended in ``outcome``.

    ``retry_count`` is how many retries this budget made before that request (0 for the
    first request, so the request was number ``retry_count + 1`` of ``max_attempts``).

    ``retry_after`` is how long the site or the gate asked to wait, as the attempt report
    stored it (clamped there: ``census.limits``); ``deferred_s`` is how long this budget
    already waited on a closed gate; ``bounded`` False lets a deferral wait past
    ``max_defer`` (the day's captcha solves are spent: the next day comes, whatever the wait).

    ``answer_reason`` is what an answer's wording said beyond its outcome (the attempt
    report's): the final reason of a lookup that ends on that answer. Ignored for any other
    outcome.
    """
    wait = retry_after or 0.0
    if outcome is Outcome.DEFERRED:
        if bounded and deferred_s + wait > max_defer:
            return Finish(status=Status.ERROR, reason=Outcome.BLOCKED, exhausted=True)
        return Defer(delay=wait)
    if outcome in ANSWER_STATUS:
        return Finish(status=ANSWER_STATUS[outcome], reason=answer_reason or outcome)
    if not outcome.retriable:
        return Finish(status=Status.ERROR, reason=outcome)
    if retry_count + 1 >= max_attempts:
        return Finish(status=Status.ERROR, reason=outcome, exhausted=True)
    # A 429 that asks for a longer pause than the ladder gets its pause.
    return Retry(delay=max(retry_delay(retry_count, delays), wait))
