"""census.lookup.policy: the retry decision table."""

from __future__ import annotations

import pytest

from census.lookup.policy import Finish, Retry, decide, retry_delay
from census.models import Status
from census.outcomes import AnswerReason, Outcome

DELAYS = (60, 300, 900)


@pytest.mark.parametrize(
    ("outcome", "retry_count", "expected"),
    [
        (Outcome.FOUND, 0, Finish(status=Status.FOUND, reason="found")),
        (Outcome.NOT_FOUND, 1, Finish(status=Status.NOT_FOUND, reason="not_found")),
        (Outcome.CANCELLED, 2, Finish(status=Status.CANCELLED, reason="cancelled")),
        (Outcome.INVALID_CEDULA, 0, Finish(status=Status.ERROR, reason="invalid_cedula")),
        (Outcome.MISSING_CEDULA, 0, Finish(status=Status.ERROR, reason="missing_cedula")),
        (Outcome.TIMEOUT, 0, Retry(delay=60)),
        (Outcome.CONNECTION_ERROR, 0, Retry(delay=60)),
        (Outcome.CAPTCHA_FAILED, 0, Retry(delay=60)),
        (Outcome.BLOCKED, 1, Retry(delay=300)),
        (Outcome.UNEXPECTED_PAGE, 1, Retry(delay=300)),
        (Outcome.TASK_FAILED, 0, Retry(delay=60)),
        (Outcome.LOST, 1, Retry(delay=300)),
        (Outcome.TIMEOUT, 2, Finish(status=Status.ERROR, reason="timeout", exhausted=True)),
        (Outcome.BLOCKED, 2, Finish(status=Status.ERROR, reason="blocked", exhausted=True)),
    ],
)
def test_decide_default_budget(outcome: Outcome, retry_count: int, expected: object) -> None:
    """Answers finish, retriable failures retry on the ladder, the third failure gives up."""
    assert decide(outcome, retry_count, max_attempts=3, delays=DELAYS) == expected


@pytest.mark.parametrize(
    ("retry_count", "delay"), [(0, 60), (1, 300), (2, 900), (3, 900), (8, 900)]
)
def test_retry_delay_uses_last_step_past_the_ladder(retry_count: int, delay: float) -> None:
    """The delay before retry n + 1 is delays[min(n, len-1)]."""
    assert retry_delay(retry_count, DELAYS) == delay


def test_raised_maximum_reaches_the_fifteen_minute_step() -> None:
    """With five attempts the third retry waits 15 minutes."""
    assert decide(Outcome.TIMEOUT, 2, max_attempts=5, delays=DELAYS) == Retry(delay=900)


def test_retry_after_longer_than_the_ladder_wins() -> None:
    """A 429's Retry-After above the ladder's delay is honoured."""
    assert decide(Outcome.BLOCKED, 0, max_attempts=3, delays=DELAYS, retry_after=120) == Retry(
        delay=120
    )
    assert decide(Outcome.BLOCKED, 0, max_attempts=3, delays=DELAYS, retry_after=5) == Retry(
        delay=60
    )


def test_single_attempt_budget_never_retries() -> None:
    """CENSUS_MAX_ATTEMPTS=1 turns every retriable failure into an error."""
    decision = decide(Outcome.TIMEOUT, 0, max_attempts=1, delays=DELAYS)
    assert decision == Finish(status=Status.ERROR, reason="timeout", exhausted=True)


def test_every_outcome_is_classified() -> None:
    """Only answers and invalid input are final; everything else is retriable."""
    final = {o for o in Outcome if not o.retriable}
    assert final == {
        Outcome.FOUND,
        Outcome.NOT_FOUND,
        Outcome.CANCELLED,
        Outcome.INVALID_CEDULA,
        Outcome.MISSING_CEDULA,
    }


@pytest.mark.parametrize(
    ("outcome", "reason", "status"),
    [
        (Outcome.CANCELLED, AnswerReason.RIGHTS_SUSPENDED, Status.CANCELLED),
        (Outcome.NOT_FOUND, AnswerReason.NOT_ENABLED, Status.NOT_FOUND),
        (Outcome.NOT_FOUND, AnswerReason.PENDING_REQUEST, Status.NOT_FOUND),
    ],
)
def test_an_answers_reason_is_its_final_reason(
    outcome: Outcome, reason: AnswerReason, status: Status
) -> None:
    """An answer whose wording says more than its outcome finishes in the outcome's status
    with that reason; any other outcome ignores it."""
    decision = decide(outcome, 0, max_attempts=3, delays=DELAYS, answer_reason=reason)
    assert decision == Finish(status=status, reason=reason)
    assert decide(
        Outcome.TIMEOUT, 2, max_attempts=3, delays=DELAYS, answer_reason=reason
    ) == Finish(status=Status.ERROR, reason="timeout", exhausted=True)
