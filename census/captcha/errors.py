"""What can go wrong asking a solving service for a token, as three kinds of error.

The kinds decide what a caller does next, so they are chosen by one pure table
(``ERROR_CODES``) of the services' own ``errorCode`` values:

- ``CaptchaServiceUnavailable``: the service cannot serve this account now (unreachable, an
  HTTP 5xx, a zero balance, a wrong key, no free worker, a banned IP). No lookup is to blame:
  lookups wait and no member is charged.
- ``CaptchaNotSolved``: the service took the task and failed it (unsolvable, its own timeout,
  the task lost, or no token by our deadline). A new task may be asked.
- ``CaptchaRequestError``: anything else (a refused request, an answer in no known shape): a
  setting, a bug, or a change on the service's side.
"""

from __future__ import annotations

from enum import Enum

from census.exceptions import CensusError


class Failure(Enum):
    """The kind of a solving service's error; each maps to one exception class."""

    #: The account or the service, not the task: wait, charge nobody.
    UNAVAILABLE = "unavailable"
    #: This task failed; another may succeed.
    NOT_SOLVED = "not_solved"
    #: Neither: a refused request or an unknown answer.
    REQUEST = "request"


#: ``errorCode`` -> (kind, reason). The codes come from the services' documentation:
#: 2captcha's API v2 and Anti-Captcha share most (with the same numeric ``errorId``);
#: CapMonster Cloud follows Anti-Captcha; CapSolver names some its own way (noted);
#: 2captcha's legacy ``in.php`` answers add a few. Any code not listed is a ``REQUEST``.
ERROR_CODES: dict[str, tuple[Failure, str]] = {
    # The account's key.
    "ERROR_KEY_DOES_NOT_EXIST": (Failure.UNAVAILABLE, "bad_key"),
    "ERROR_WRONG_USER_KEY": (Failure.UNAVAILABLE, "bad_key"),  # 2captcha in.php
    "ERROR_KEY_DENIED_ACCESS": (Failure.UNAVAILABLE, "bad_key"),  # CapSolver
    # The account's money.
    "ERROR_ZERO_BALANCE": (Failure.UNAVAILABLE, "zero_balance"),
    # The service's capacity, or its limits on this account.
    "ERROR_NO_SLOT_AVAILABLE": (Failure.UNAVAILABLE, "no_slot"),
    "ERROR_RATE_LIMIT": (Failure.UNAVAILABLE, "rate_limited"),  # CapSolver
    "ERROR_TOO_MUCH_REQUESTS": (Failure.UNAVAILABLE, "rate_limited"),  # CapMonster
    "ERROR_SERVICE_UNAVALIABLE": (Failure.UNAVAILABLE, "service_down"),  # CapSolver's spelling
    "ERROR_SERVICE_UNAVAILABLE": (Failure.UNAVAILABLE, "service_down"),
    # This host's address.
    "ERROR_IP_NOT_ALLOWED": (Failure.UNAVAILABLE, "ip_not_allowed"),
    "ERROR_IP_BLOCKED": (Failure.UNAVAILABLE, "ip_banned"),  # 2captcha v2, Anti-Captcha
    "ERROR_IP_BANNED": (Failure.UNAVAILABLE, "ip_banned"),  # CapMonster, CapSolver
    "IP_BANNED": (Failure.UNAVAILABLE, "ip_banned"),  # 2captcha in.php
    # The task itself.
    "ERROR_CAPTCHA_UNSOLVABLE": (Failure.NOT_SOLVED, "unsolvable"),
    "ERROR_CAPTCHA_SOLVE_FAILED": (Failure.NOT_SOLVED, "unsolvable"),  # CapSolver
    "ERROR_BAD_DUPLICATES": (Failure.NOT_SOLVED, "unsolvable"),
    "ERROR_TASK_TIMEOUT": (Failure.NOT_SOLVED, "service_timeout"),  # CapSolver
    "ERROR_NO_SUCH_CAPCHA_ID": (Failure.NOT_SOLVED, "task_lost"),
    "WRONG_CAPTCHA_ID": (Failure.NOT_SOLVED, "task_lost"),  # CapMonster
    "ERROR_TASKID_INVALID": (Failure.NOT_SOLVED, "task_lost"),  # CapSolver
}


def failure_for(code: str) -> tuple[Failure, str]:
    """(kind, reason) of a service's ``errorCode``; unknown codes are ``REQUEST`` errors."""
    return ERROR_CODES.get(code.strip().upper(), (Failure.REQUEST, "refused"))


class CaptchaError(CensusError):
    """A solving service gave no token. Never carries the API key."""

    def __init__(self, message: str, *, service: str = "", code: str = "", reason: str = ""):
        super().__init__(message)
        #: The service's name (``"2captcha"``, ...).
        self.service = service
        #: The service's ``errorCode``, or "" for a failure of the transport or our deadline.
        self.code = code
        #: A short stable word for logs and metrics (``"zero_balance"``, ``"unsolvable"``, ...).
        self.reason = reason


#: Seconds a lookup waits, deferred and uncharged, when the service cannot serve the account.
SERVICE_WAIT_SECONDS = 60.0


class CaptchaServiceUnavailable(CaptchaError):
    """The service cannot serve this account now: unreachable, HTTP 5xx, zero balance, a wrong
    key, no free worker, rate-limited, this IP refused. Not the task's fault: wait.

    ``defer_seconds`` is what the scraper reads (it knows no census.captcha class): a solver
    error carrying it defers the lookup that long, uncharged."""

    defer_seconds = SERVICE_WAIT_SECONDS


class CaptchaNotSolved(CaptchaError):
    """The service failed this task (unsolvable, its own timeout, the task lost); ask again."""


class CaptchaSolveTimeout(CaptchaNotSolved):
    """No token came before the caller's deadline (the task may still be solved, and paid)."""


class CaptchaRequestError(CaptchaError):
    """The service refused the request or answered in no known shape."""


_CLASSES: dict[Failure, type[CaptchaError]] = {
    Failure.UNAVAILABLE: CaptchaServiceUnavailable,
    Failure.NOT_SOLVED: CaptchaNotSolved,
    Failure.REQUEST: CaptchaRequestError,
}


def error_for(service: str, code: str, description: str = "") -> CaptchaError:
    """The exception for a service's error answer (``errorCode`` and ``errorDescription``)."""
    kind, reason = failure_for(code)
    text = f"{service}: {code}" + (f" ({description.strip()[:200]})" if description else "")
    return _CLASSES[kind](text, service=service, code=code, reason=reason)
