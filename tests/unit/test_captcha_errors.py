"""census.captcha.errors: the services' error codes sorted into three kinds, by one table."""

from __future__ import annotations

import pytest

from census.captcha.errors import (
    ERROR_CODES,
    CaptchaError,
    CaptchaNotSolved,
    CaptchaRequestError,
    CaptchaServiceUnavailable,
    Failure,
    error_for,
    failure_for,
)
from census.exceptions import CensusError

pytestmark = pytest.mark.any_database


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        # The account or the service: lookups wait, nobody is charged.
        ("ERROR_KEY_DOES_NOT_EXIST", Failure.UNAVAILABLE, "bad_key"),
        ("ERROR_WRONG_USER_KEY", Failure.UNAVAILABLE, "bad_key"),
        ("ERROR_KEY_DENIED_ACCESS", Failure.UNAVAILABLE, "bad_key"),
        ("ERROR_ZERO_BALANCE", Failure.UNAVAILABLE, "zero_balance"),
        ("ERROR_NO_SLOT_AVAILABLE", Failure.UNAVAILABLE, "no_slot"),
        ("ERROR_RATE_LIMIT", Failure.UNAVAILABLE, "rate_limited"),
        ("ERROR_TOO_MUCH_REQUESTS", Failure.UNAVAILABLE, "rate_limited"),
        ("ERROR_IP_BLOCKED", Failure.UNAVAILABLE, "ip_banned"),
        ("ERROR_IP_BANNED", Failure.UNAVAILABLE, "ip_banned"),
        ("IP_BANNED", Failure.UNAVAILABLE, "ip_banned"),
        ("ERROR_IP_NOT_ALLOWED", Failure.UNAVAILABLE, "ip_not_allowed"),
        ("ERROR_SERVICE_UNAVALIABLE", Failure.UNAVAILABLE, "service_down"),
        # The task: ask again.
        ("ERROR_CAPTCHA_UNSOLVABLE", Failure.NOT_SOLVED, "unsolvable"),
        ("ERROR_CAPTCHA_SOLVE_FAILED", Failure.NOT_SOLVED, "unsolvable"),
        ("ERROR_TASK_TIMEOUT", Failure.NOT_SOLVED, "service_timeout"),
        ("ERROR_NO_SUCH_CAPCHA_ID", Failure.NOT_SOLVED, "task_lost"),
        ("ERROR_TASKID_INVALID", Failure.NOT_SOLVED, "task_lost"),
        # Anything else: a refused request.
        ("ERROR_TASK_NOT_SUPPORTED", Failure.REQUEST, "refused"),
        ("ERROR_RECAPTCHA_INVALID_SITEKEY", Failure.REQUEST, "refused"),
        ("ERROR_SOMETHING_NEW", Failure.REQUEST, "refused"),
        ("", Failure.REQUEST, "refused"),
    ],
)
def test_each_code_has_one_kind(code: str, kind: Failure, reason: str) -> None:
    """The table sorts every documented code; an unknown one is a refused request."""
    assert failure_for(code) == (kind, reason)


def test_codes_are_read_whatever_their_case_and_spacing() -> None:
    """A code sent in lower case or with spaces around it is still recognised."""
    assert failure_for(" error_zero_balance ") == (Failure.UNAVAILABLE, "zero_balance")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("ERROR_ZERO_BALANCE", CaptchaServiceUnavailable),
        ("ERROR_CAPTCHA_UNSOLVABLE", CaptchaNotSolved),
        ("ERROR_TASK_NOT_SUPPORTED", CaptchaRequestError),
    ],
)
def test_error_for_builds_the_kinds_exception(code: str, cls: type[CaptchaError]) -> None:
    """error_for gives the kind's class, with the service, code, reason and description."""
    error = error_for("2captcha", code, "what the service said")
    assert type(error) is cls
    assert isinstance(error, CensusError)
    assert (error.service, error.code) == ("2captcha", code)
    assert error.reason == failure_for(code)[1]
    assert str(error) == f"2captcha: {code} (what the service said)"


def test_every_kind_of_the_table_has_a_class() -> None:
    """Every kind (the table's, and the default for unknown codes) has its exception."""
    kinds = {kind for kind, _ in ERROR_CODES.values()} | {failure_for("ERROR_NEW")[0]}
    assert kinds == set(Failure)
    for code in ERROR_CODES:
        assert isinstance(error_for("capsolver", code), CaptchaError)
