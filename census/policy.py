"""The retry policy: pure, (outcome, budget try) -> finish, retry after N seconds, or defer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from census.limits import MAX_DEFER_SECONDS
from census.models import Status
from census.outcomes import Outcome

_ANSWER_STATUS = {
    Outcome.FOUND: Status.FOUND,
    Outcome.NOT_FOUND: Status.NOT_FOUND,
    Outcome.CANCELLED: Status.CANCELLED,
}


@dataclass(frozen=True, kw_only=True)
class Finish:
    """End the lookup in ``status``; ``reason`` is the outcome that ended it."""

    status: Status
    reason: Outcome
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


def retry_delay(budget_try: int, delays: Sequence[float]) -> float:
    """Seconds between try ``budget_try`` (1-based) and the next: ``delays[min(n-1, len-1)]``."""
    return float(delays[min(budget_try - 1, len(delays) - 1)])


def decide(
    outcome: Outcome,
    budget_try: int,
    *,
    max_attempts: int,
    delays: Sequence[float],
    retry_after: float | None = None,
    deferred_s: float = 0.0,
    max_defer: float = MAX_DEFER_SECONDS,
) -> Decision:
    """What to do after try ``budget_try`` (1-based, within the budget) ended in ``outcome``.

    ``retry_after`` is how long the site or the gate asked to wait, as the attempt report
    stored it (clamped there: ``census.limits``); ``deferred_s`` is how long this budget
    already waited on a closed gate.
    """
    wait = retry_after or 0.0
    if outcome is Outcome.DEFERRED:
        if deferred_s + wait > max_defer:
            return Finish(status=Status.ERROR, reason=Outcome.BLOCKED, exhausted=True)
        return Defer(delay=wait)
    if outcome in _ANSWER_STATUS:
        return Finish(status=_ANSWER_STATUS[outcome], reason=outcome)
    if not outcome.retriable:
        return Finish(status=Status.ERROR, reason=outcome)
    if budget_try >= max_attempts:
        return Finish(status=Status.ERROR, reason=outcome, exhausted=True)
    # A 429 that asks for a longer pause than the ladder gets its pause.
    return Retry(delay=max(retry_delay(budget_try, delays), wait))
