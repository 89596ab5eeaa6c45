"""The one vocabulary of lookup outcomes."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What one lookup attempt found out; ``.retriable`` says whether to try again."""

    #: The cédula is in the census; the polling place came back.
    FOUND = "found"
    #: The site answered that the cédula is not in the census for this election.
    NOT_FOUND = "not_found"
    #: The cédula carries a novedad (cancelled: death, double registration, ...).
    CANCELLED = "cancelled"
    #: The cédula is not 3 to 10 digits; it was never sent to the site.
    INVALID_CEDULA = "invalid_cedula"
    #: The user has no cédula value at all.
    MISSING_CEDULA = "missing_cedula"
    #: The site did not answer within the scrape timeout.
    TIMEOUT = "timeout"
    #: Refused, reset, DNS failure or an HTTP 5xx.
    CONNECTION_ERROR = "connection_error"
    #: The captcha asked for a challenge nobody solved, or its token was rejected.
    CAPTCHA_FAILED = "captcha_failed"
    #: The F5 block page, an HTTP 403 or an HTTP 429.
    BLOCKED = "blocked"
    #: A page or answer the parser does not recognise.
    UNEXPECTED_PAGE = "unexpected_page"
    #: The attempt's task raised, or Django-Q2 stopped it (its own timeout).
    TASK_FAILED = "task_failed"
    #: The attempt never reported back (its worker died); found by the sweeper.
    LOST = "lost"
    #: The cluster-wide gate was closed (breaker open, or no slot before the deadline):
    #: nothing was sent to the site, and the attempt does not count against the budget.
    DEFERRED = "deferred"

    @property
    def retriable(self) -> bool:
        return self not in _FINAL

    @property
    def is_answer(self) -> bool:
        """The census site gave a definite answer about this cédula."""
        return self in _ANSWERS


_ANSWERS = frozenset({Outcome.FOUND, Outcome.NOT_FOUND, Outcome.CANCELLED})
_FINAL = _ANSWERS | {Outcome.INVALID_CEDULA, Outcome.MISSING_CEDULA}


class AnswerReason(StrEnum):
    """Why a census answer is what it is, when the site's wording says more than its outcome.

    A lookup that ends on such an answer keeps its status (``cancelled`` or ``not_found``)
    and has this value as its ``final_reason`` instead of the outcome's own;
    ``census.scraper.wordings`` is the one table from the site's wordings to both.
    """

    #: Cancelled: the holder's political rights are lost or suspended ("Vigente con", "Baja
    #: por" or "Cancelada por Pérdida o Suspensión de los Derechos Políticos"). The cédula may
    #: be valid; its holder may not vote while the suspension lasts.
    RIGHTS_SUSPENDED = "rights_suspended"
    #: Not found: "no se encuentra habilitado para votar" (listed, but not enabled to vote).
    NOT_ENABLED = "not_enabled"
    #: Not found: "Pendiente por Solicitud en proceso": a request about the cédula is being
    #: processed; the census may list it later (a re-check or a refresh asks again).
    PENDING_REQUEST = "pending_request"


#: Why a ``deferred`` attempt sent nothing because of this host, not the gate: it could not
#: drive a browser in time, or had none free. Re-tried shortly, off the gate's cursor.
OWN_SLOWNESS_REASONS = ("browser_slow", "browsers_busy")


def is_own_slowness(error: str) -> bool:
    """Does a deferred attempt's error text name this host's slowness?"""
    return error.split(":", 1)[0] in OWN_SLOWNESS_REASONS


#: Why a ``deferred`` attempt sent nothing because the captcha-solving service could not
#: serve the account (no balance, down, a bad key): a solver error with ``defer_seconds``.
CAPTCHA_SERVICE_REASON = "captcha_service"


#: Why a ``deferred`` attempt sent nothing because no solved token was there for it yet
#: (``census.captcha.pool``): it looks again when one is likely there, off the gate's line.
CAPTCHA_TOKEN_REASON = "captcha_token"


def is_captcha_token(error: str) -> bool:
    """Did a deferred attempt wait for a solved token?"""
    return error.split(":", 1)[0] == CAPTCHA_TOKEN_REASON


#: Why a ``deferred`` attempt sent nothing because its work class had used its share of the
#: site while registrations waited, or was unverified while verified work waited
#: (``census.gate.shares``): it looks again later, off the gate's line, uncharged and
#: unbounded by ``CENSUS_MAX_DEFER_SECONDS`` (its turn comes once the others are served).
CAPACITY_REASON = "capacity"


def is_capacity(error: str) -> bool:
    """Did a deferred attempt wait for its work class's share of the site?"""
    return error.split(":", 1)[0] == CAPACITY_REASON


#: The words after ``captcha_service:`` when the day's solves (CENSUS_CAPTCHA_DAILY_LIMIT) are
#: spent: the lookup waits for the next day, past CENSUS_MAX_DEFER_SECONDS if need be.
DAILY_LIMIT_REASON = "daily_limit"


def is_daily_limit(error: str) -> bool:
    """Did a deferred attempt wait for the next day's solves?"""
    head, _, rest = error.partition(":")
    return head == CAPTCHA_SERVICE_REASON and rest.strip().startswith(DAILY_LIMIT_REASON)


def is_captcha_service(error: str) -> bool:
    """Does a deferred attempt's error text say the solving service could not serve it?"""
    return error.split(":", 1)[0] == CAPTCHA_SERVICE_REASON
