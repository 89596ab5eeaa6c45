"""The simulator's scenarios: which behaviour a cédula triggers, chosen by its leading digits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scenario(StrEnum):
    """What the simulated census site does with one cédula (see docs/simulator.md)."""

    #: Found; ``data`` keys in lower case. Also every cédula no other prefix claims.
    FOUND = "found"
    #: Found; ``nom_puesto`` holds a locality and ``direccion`` the school name.
    FOUND_LOCALITY = "found_locality"
    #: Found; ``data`` keys in UPPER case.
    FOUND_UPPER = "found_upper"
    #: Found; ``data`` without ``coddivipol`` (the others carry one).
    FOUND_WITHOUT_CODDIVIPOL = "found_without_coddivipol"
    #: Not in the census for this election.
    NOT_FOUND = "not_found"
    #: ``encontrado: false``, its ``mensaje`` reworded: no "no se encuentra en el censo".
    NOT_FOUND_REWORDED = "not_found_reworded"
    #: Cancelled: "Cancelada por Muerte".
    CANCELLED_DEATH = "cancelled_death"
    #: Cancelled: "Cancelada por Doble Cedulación".
    CANCELLED_DOUBLE = "cancelled_double"
    #: Cancelled: "Cancelada por Pérdida o Suspensión de los Derechos Políticos".
    CANCELLED_RIGHTS = "cancelled_rights"
    #: Novelty: "Vigente con Pérdida o Suspensión de los Derechos Políticos".
    NOVEDAD_RIGHTS_VALID = "novedad_rights_valid"
    #: Novelty: "Baja por Pérdida o Suspensión de los Derechos Políticos".
    NOVEDAD_RIGHTS_REMOVED = "novedad_rights_removed"
    #: Novelty: "no se encuentra habilitado para votar".
    NOVEDAD_NOT_ENABLED = "novedad_not_enabled"
    #: Novelty: "Pendiente por Solicitud en proceso".
    NOVEDAD_PENDING = "novedad_pending"
    #: Cancelled: "Cancelada por Falsa Identidad".
    CANCELLED_FALSE_IDENTITY = "cancelled_false_identity"
    #: Novelty in a wording census does not know: "En verificación de identidad".
    NOVEDAD_UNKNOWN = "novedad_unknown"
    #: The F5 BIG-IP block page, HTTP 200 text/html.
    BLOCKED_PAGE = "blocked_page"
    #: HTTP 403.
    BLOCKED_403 = "blocked_403"
    #: HTTP 429 with ``Retry-After``.
    BLOCKED_429 = "blocked_429"
    #: The captcha widget opens an image challenge and never writes a token.
    CAPTCHA_CHALLENGE = "captcha_challenge"
    #: The consulta rejects the (valid) captcha token.
    TOKEN_REJECTED = "token_rejected"
    #: Found, answered after ``slow_seconds``.
    SLOW = "slow"
    #: The connection is reset (RST) without an answer.
    RESET = "reset"
    #: HTTP 500 with a full HTML error page.
    SERVER_ERROR = "server_error"
    #: HTTP 200 whose body is neither the JSON answer nor a known page.
    MALFORMED = "malformed"
    #: Flaky (``7K0``): the first K consultas get the F5 block page, later ones are found.
    FLAKY_BLOCKED_PAGE = "flaky_blocked_page"
    #: Flaky (``7K1``): the first K consultas get HTTP 500.
    FLAKY_SERVER_ERROR = "flaky_server_error"
    #: Flaky (``7K2``): the first K consultas are reset.
    FLAKY_RESET = "flaky_reset"
    #: Flaky (``7K3``): the first K consultas have their token rejected.
    FLAKY_TOKEN_REJECTED = "flaky_token_rejected"
    #: Flaky (``7K4``): the first K consultas are slow.
    FLAKY_SLOW = "flaky_slow"
    #: Flaky (``7K5``): the first K consultas get HTTP 429 with ``Retry-After``.
    FLAKY_BLOCKED_429 = "flaky_blocked_429"
    # -- poison answers (``8x``): malformed in ways that break naive clients -------------------
    #: HTTP 429 with ``Retry-After: inf``.
    BLOCKED_429_RETRY_INF = "blocked_429_retry_inf"
    #: HTTP 429 with ``Retry-After: 1e12`` (about 31,700 years).
    BLOCKED_429_RETRY_HUGE = "blocked_429_retry_huge"
    #: HTTP 429 with ``Retry-After: Fri, 31 Dec 9999 23:59:59 GMT``.
    BLOCKED_429_RETRY_DATE_9999 = "blocked_429_retry_date_9999"
    #: HTTP 429 with ``Retry-After: -5``.
    BLOCKED_429_RETRY_NEGATIVE = "blocked_429_retry_negative"
    #: HTTP 200 ``text/html`` whose body is 8 MiB of filler HTML, streamed.
    HUGE_BODY = "huge_body"
    #: HTTP 200 ``text/html``: 20,000 nested ``<div>`` around the not-found message.
    DEEP_HTML = "deep_html"
    #: HTTP 200 ``application/json``: 100,000 nested arrays (``[[[...]]]``).
    DEEP_JSON = "deep_json"
    #: Found; ``nom_puesto`` and ``direccion`` 10,000 characters, ``mesa`` 500 digits.
    FOUND_LONG_FIELDS = "found_long_fields"
    #: Cancelled; ``novedad`` (also ``descripcion``) and ``resolucion`` 10,000 characters.
    CANCELLED_LONG_FIELDS = "cancelled_long_fields"
    #: HTTP 200 ``application/json``: a 3 MiB answer with no ``Content-Length``, streamed.
    HUGE_JSON = "huge_json"
    # -- leaving the site (``9x``) --------------------------------------------------------------
    #: The consulta is answered HTTP 307 to another origin (the simulator's ``elsewhere_url``).
    REDIRECT_OFF_SITE = "redirect_off_site"


_BY_PREFIX: dict[str, Scenario] = {
    "10": Scenario.FOUND,
    "11": Scenario.FOUND_LOCALITY,
    "12": Scenario.FOUND_UPPER,
    "13": Scenario.FOUND_WITHOUT_CODDIVIPOL,
    "20": Scenario.NOT_FOUND,
    "21": Scenario.NOT_FOUND_REWORDED,
    "30": Scenario.CANCELLED_DEATH,
    "31": Scenario.CANCELLED_DOUBLE,
    "32": Scenario.CANCELLED_RIGHTS,
    "33": Scenario.NOVEDAD_RIGHTS_VALID,
    "34": Scenario.NOVEDAD_RIGHTS_REMOVED,
    "35": Scenario.NOVEDAD_NOT_ENABLED,
    "36": Scenario.NOVEDAD_PENDING,
    "37": Scenario.CANCELLED_FALSE_IDENTITY,
    "38": Scenario.NOVEDAD_UNKNOWN,
    "40": Scenario.BLOCKED_PAGE,
    "41": Scenario.BLOCKED_403,
    "42": Scenario.BLOCKED_429,
    "50": Scenario.CAPTCHA_CHALLENGE,
    "51": Scenario.TOKEN_REJECTED,
    "60": Scenario.SLOW,
    "61": Scenario.RESET,
    "62": Scenario.SERVER_ERROR,
    "63": Scenario.MALFORMED,
    "80": Scenario.BLOCKED_429_RETRY_INF,
    "81": Scenario.BLOCKED_429_RETRY_HUGE,
    "82": Scenario.BLOCKED_429_RETRY_DATE_9999,
    "83": Scenario.BLOCKED_429_RETRY_NEGATIVE,
    "84": Scenario.HUGE_BODY,
    "85": Scenario.DEEP_HTML,
    "86": Scenario.DEEP_JSON,
    "87": Scenario.FOUND_LONG_FIELDS,
    "88": Scenario.CANCELLED_LONG_FIELDS,
    "89": Scenario.HUGE_JSON,
    "90": Scenario.REDIRECT_OFF_SITE,
}

#: The ``Retry-After`` header value of each poison 429 scenario.
POISON_RETRY_AFTER: dict[Scenario, str] = {
    Scenario.BLOCKED_429_RETRY_INF: "inf",
    Scenario.BLOCKED_429_RETRY_HUGE: "1e12",
    Scenario.BLOCKED_429_RETRY_DATE_9999: "Fri, 31 Dec 9999 23:59:59 GMT",
    Scenario.BLOCKED_429_RETRY_NEGATIVE: "-5",
}

#: Blocking-spell kind -> the scenario whose answer every consulta gets during the spell.
SPELL_KINDS: dict[str, Scenario] = {
    "f5": Scenario.BLOCKED_PAGE,
    "403": Scenario.BLOCKED_403,
    "429": Scenario.BLOCKED_429,
}


def spell_scenario_name(kind: str) -> str:
    """The access-log scenario of a consulta blocked by a spell of this kind: ``spell_<kind>``."""
    return f"spell_{kind}"


#: Flaky mode digit M (third digit of ``7KM``) -> the scenario of the failing requests.
FLAKY_FAILURE: dict[str, Scenario] = {
    "0": Scenario.BLOCKED_PAGE,
    "1": Scenario.SERVER_ERROR,
    "2": Scenario.RESET,
    "3": Scenario.TOKEN_REJECTED,
    "4": Scenario.SLOW,
    "5": Scenario.BLOCKED_429,
}
_FLAKY_NAME: dict[str, Scenario] = {
    "0": Scenario.FLAKY_BLOCKED_PAGE,
    "1": Scenario.FLAKY_SERVER_ERROR,
    "2": Scenario.FLAKY_RESET,
    "3": Scenario.FLAKY_TOKEN_REJECTED,
    "4": Scenario.FLAKY_SLOW,
    "5": Scenario.FLAKY_BLOCKED_429,
}


@dataclass(frozen=True, kw_only=True)
class FlakyPlan:
    """A flaky cédula fails its first ``failures`` consultas as ``failure``, then is found."""

    failures: int
    failure: Scenario


def flaky_plan(cedula: str) -> FlakyPlan | None:
    """The failure plan of a ``7KM`` cédula (K = 1..9, M = 0..5), else None."""
    if len(cedula) < 3 or cedula[0] != "7" or cedula[1] not in "123456789":
        return None
    failure = FLAKY_FAILURE.get(cedula[2])
    return FlakyPlan(failures=int(cedula[1]), failure=failure) if failure else None


def scenario_for(cedula: str) -> Scenario:
    """The scenario a cédula (digits) triggers; unclaimed prefixes are simply found."""
    plan = flaky_plan(cedula)
    if plan is not None:
        return _FLAKY_NAME[cedula[2]]
    return _BY_PREFIX.get(cedula[:2], Scenario.FOUND)
