"""The pure parser: saved consulta responses and rendered pages in, ``LookupResult`` out."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from census.cedula import mask
from census.limits import MAX_RETRY_AFTER_SECONDS
from census.outcomes import AnswerReason, Outcome
from census.scraper.base import LookupResult, Novedad, Place
from census.scraper.parser import (
    EXCERPT_CHARS,
    MAX_BODY_CHARS,
    MAX_CODE_DIGITS,
    MAX_FIELD_CHARS,
    MAX_PAGE_CHARS,
    SIGNATURE_CHARS,
    SIGNATURE_FIELDS,
    VISIBLE_TEXT_ONLY,
    is_f5_block,
    parse_answer,
    parse_consulta,
    parse_rendered_page,
    parse_retry_after,
    scrub_page,
    unexpected_signature,
)

FIXTURES = Path(__file__).parent / "fixtures" / "responses"
JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Case:
    fixture: str
    cedula: str
    outcome: Outcome
    status: int = 200
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    place: Place | None = None
    novedad: Novedad | None = None
    retry_after: float | None = None
    detail: str = ""  # a regex the detail must match

    def __str__(self) -> str:
        return f"{self.fixture}-{self.status}"


CONSULTA_CASES = [
    Case(
        "found.json",
        "1012345678",
        Outcome.FOUND,
        place=Place(
            departamento="BOGOTA D.C.",
            municipio="BOGOTA. D.C.",
            puesto="COLEGIO DISTRITAL LA CANDELARIA",
            direccion="CL 12 # 2-45",
            mesa="7",
            coddivipol="1600101",
        ),
    ),
    # A real answer: nom_puesto holds a locality and direccion the school; kept as sent.
    Case(
        "found_locality.json",
        "1100223344",
        Outcome.FOUND,
        place=Place(
            departamento="CUNDINAMARCA",
            municipio="SOACHA",
            puesto="CAZUCA",
            direccion="INSTITUCION EDUCATIVA GABRIEL GARCIA MARQUEZ",
            mesa="12",
            coddivipol="1519001",
        ),
    ),
    Case(
        "found_upper.json",
        "1209876543",
        Outcome.FOUND,
        place=Place(
            departamento="ANTIOQUIA",
            municipio="MEDELLIN",
            puesto="I.E. INEM JOSE FELIX DE RESTREPO",
            direccion="CR 48 # 1-125",
            mesa="3",
        ),
    ),
    Case(
        "not_found.json",
        "2012345678",
        Outcome.NOT_FOUND,
        detail=r"^El documento \*{7}678 no se encuentra en el censo",
    ),
    Case(
        "cancelled_muerte.json",
        "3012345678",
        Outcome.CANCELLED,
        novedad=Novedad(
            novedad="Cancelada por Muerte", resolucion="0123 de 2021", fecha_novedad="2021-05-14"
        ),
    ),
    # A truthy string novedad wins over encontrado=true.
    Case(
        "cancelled_doble.json",
        "31234567",
        Outcome.CANCELLED,
        novedad=Novedad(
            novedad="Cancelada por Doble Cedulación",
            resolucion="4521 de 2015",
            fecha_novedad="2015-11-03",
        ),
    ),
    Case(
        "cancelled_perdida.json",
        "3212345678",
        Outcome.CANCELLED,
        novedad=Novedad(
            novedad="Cancelada por Pérdida de derechos políticos",
            resolucion="0077 de 2023",
            fecha_novedad="2023-02-20",
        ),
    ),
    Case("captcha_rejected.json", "5112345678", Outcome.CAPTCHA_FAILED, detail="Captcha inválido"),
    Case("token_expired.json", "5112345678", Outcome.CAPTCHA_FAILED, detail="expirado"),
    # A captcha rejection keeps its meaning even when sent with a 403.
    Case("captcha_rejected.json", "5112345678", Outcome.CAPTCHA_FAILED, status=403),
    Case(
        "error_other.json",
        "5512345678",
        Outcome.UNEXPECTED_PAGE,
        detail=r"Servicio no disponible para el documento \*+678",
    ),
    Case(
        "f5_block.html",
        "4012345678",
        Outcome.BLOCKED,
        content_type=HTML,
        detail=r"requested URL was rejected.*support ID 9218675476218347823",
    ),
    Case("f5_authenticate.html", "4012345678", Outcome.BLOCKED, content_type=HTML),
    Case("forbidden.html", "4112345678", Outcome.BLOCKED, status=403, content_type=HTML),
    Case("found.json", "4112345678", Outcome.BLOCKED, status=403),
    Case(
        "too_many.html",
        "4212345678",
        Outcome.BLOCKED,
        status=429,
        content_type=HTML,
        headers={"retry-after": "10"},
        retry_after=10.0,
        detail="Retry-After: 10s",
    ),
    Case(
        "too_many.html",
        "4212345678",
        Outcome.BLOCKED,
        status=429,
        content_type=HTML,
        headers={"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"},
        retry_after=30.0,
    ),
    Case("too_many.html", "4212345678", Outcome.BLOCKED, status=429, content_type=HTML),
    Case(
        "server_error.html",
        "6212345678",
        Outcome.CONNECTION_ERROR,
        status=500,
        content_type=HTML,
        detail=r"^HTTP 500: .*Error interno del servidor.*documento \*{7}678",
    ),
    Case("found.json", "6212345678", Outcome.CONNECTION_ERROR, status=502),
    Case(
        "malformed.html",
        "6312345678",
        Outcome.UNEXPECTED_PAGE,
        content_type=HTML,
        detail=r"Mantenimiento programado: el servicio para \*{7}678",
    ),
    # The reCAPTCHA widget says "challenge": that page is not a block.
    Case(
        "page_with_captcha_challenge.html",
        "5012345678",
        Outcome.UNEXPECTED_PAGE,
        content_type=HTML,
    ),
]


def _read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _assert_scrubbed(result: object, cedula: str) -> None:
    dotted = f"{int(cedula):,}".replace(",", ".")
    assert cedula not in repr(result)
    assert dotted not in repr(result)


@pytest.mark.parametrize("case", CONSULTA_CASES, ids=str)
def test_parse_consulta(case: Case) -> None:
    """Each saved consulta response (status, type, body) gives its outcome."""
    now = 1767225600.0  # 2026-01-01 00:00:00 UTC
    result = parse_consulta(
        case.status, case.content_type, _read(case.fixture), case.headers, case.cedula, now=now
    )
    assert result.outcome is case.outcome
    assert result.place == case.place
    assert result.novedad == case.novedad
    assert result.retry_after == case.retry_after
    assert result.meta["http_status"] == case.status
    assert re.search(case.detail, result.detail), result.detail
    assert len(result.detail) <= EXCERPT_CHARS
    _assert_scrubbed(result, case.cedula)


@pytest.mark.parametrize(
    ("fixture", "cedula", "outcome"),
    [
        ("rendered_found.html", "1012345678", Outcome.FOUND),
        ("rendered_cancelled.html", "30123456", Outcome.CANCELLED),
        ("rendered_not_found.html", "2012345678", Outcome.NOT_FOUND),
        ("f5_block.html", "4012345678", Outcome.BLOCKED),
        ("f5_authenticate.html", "4012345678", Outcome.BLOCKED),
        ("server_error.html", "6212345678", Outcome.UNEXPECTED_PAGE),
        ("malformed.html", "6312345678", Outcome.UNEXPECTED_PAGE),
        ("page_with_captcha_challenge.html", "5012345678", Outcome.UNEXPECTED_PAGE),
    ],
)
def test_parse_rendered_page(fixture: str, cedula: str, outcome: Outcome) -> None:
    """Each saved rendered page gives its outcome when no JSON was captured."""
    result = parse_rendered_page(_read(fixture), cedula)
    assert result.outcome is outcome, result.detail
    _assert_scrubbed(result, cedula)


def test_rendered_found_reads_the_table() -> None:
    """The found table on the page yields the polling place."""
    result = parse_rendered_page(_read("rendered_found.html"), "1012345678")
    assert result.place == Place(
        departamento="BOGOTA D.C.",
        municipio="BOGOTA. D.C.",
        puesto="COLEGIO DISTRITAL LA CANDELARIA",
        direccion="CL 12 # 2-45",
        mesa="7",
    )


def test_rendered_cancelled_reads_the_table() -> None:
    """The cancelled table on the page yields the novedad, resolution and date."""
    result = parse_rendered_page(_read("rendered_cancelled.html"), "30123456")
    assert result.novedad == Novedad(
        novedad="Cancelada por Muerte", resolucion="0123 de 2021", fecha_novedad="2021-05-14"
    )


def test_rendered_not_found_keeps_the_message_scrubbed() -> None:
    """The not-found message is kept with the echoed cédula masked."""
    result = parse_rendered_page(_read("rendered_not_found.html"), "2012345678")
    assert result.detail == (
        "El documento *******678 no se encuentra en el censo para esta elección."
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"OK": True, "ENCONTRADO": True, "DATA": {"NOM_DEPTO": "META", "NOM_MUN": "ACACIAS"}},
        {"Ok": True, "Encontrado": True, "Data": {"Nom_Depto": "META", "Nom_Mun": "ACACIAS"}},
    ],
)
def test_answer_keys_in_any_case(answer: dict[str, object]) -> None:
    """Answer keys are read whatever their case (upper-case data seen live)."""
    result = parse_answer(answer, "1012345678")
    assert result.outcome is Outcome.FOUND
    assert result.place == Place(departamento="META", municipio="ACACIAS")


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        ({"encontrado": True}, "answer without ok"),
        ({"ok": True, "encontrado": True, "data": {"nuip": "1012345678"}}, "without a place"),
        ({"ok": True, "encontrado": True}, "without a place"),
    ],
)
def test_answers_the_parser_does_not_know(answer: dict[str, object], detail: str) -> None:
    """Answers of an unknown shape are unexpected_page, never a guess."""
    result = parse_answer(answer, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert detail in result.detail
    assert "1012345678" not in result.detail


def test_detail_is_bounded_and_scrubbed_before_cutting() -> None:
    """detail is scrubbed first, then cut, so no partial cédula survives the cut."""
    body = "x" * (EXCERPT_CHARS - 5) + "1012345678" + "y" * 1000
    result = parse_consulta(200, "text/plain", body, {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert len(result.detail) <= EXCERPT_CHARS
    assert "10123" not in result.detail


def test_not_json_body_is_unexpected() -> None:
    """A 200 body that is neither JSON nor a known page is unexpected_page."""
    result = parse_consulta(200, JSON, "{not json", {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    result = parse_consulta(200, JSON, "[1, 2]", {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE


def test_challenge_word_never_blocks() -> None:
    """The word 'challenge' (the reCAPTCHA widget's own) never makes a page a block."""
    html = "<html><body><h3>Please solve this challenge</h3><p>challenge</p></body></html>"
    assert not is_f5_block(html)
    assert parse_consulta(200, HTML, html, {}, "1").outcome is Outcome.UNEXPECTED_PAGE


NOW = 1767225600.0  # 2026-01-01 00:00:00 UTC


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("  30 ", 30.0),
        ("+15", 15.0),
        ("-3", 0.0),
        ("-5", 0.0),
        ("3600", 3600.0),
        ("3601", MAX_RETRY_AFTER_SECONDS),
        ("1e12", MAX_RETRY_AFTER_SECONDS),
        ("1e999", MAX_RETRY_AFTER_SECONDS),  # float() gives inf
        ("inf", MAX_RETRY_AFTER_SECONDS),
        ("Infinity", MAX_RETRY_AFTER_SECONDS),
        ("-inf", 0.0),
        ("nan", None),
        ("NaN", None),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),  # in the past
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),  # no such date
        ("Thu, 01 Jan 2026 00:01:00 -0000", None),  # no time zone
        ("soon", None),
        ("'; DROP TABLE", None),
        ("１２０", None),  # fullwidth digits are not delay-seconds
        ("1_000", None),  # float() would take it
        ("0x10", None),
        ("9" * 100_000, None),  # far longer than any Retry-After
        ("", None),
        ("   ", None),
        (None, None),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Delay-seconds and HTTP dates give a finite number in [0, max]; garbage gives None."""
    result = parse_retry_after(value, now=NOW)
    assert result == seconds
    if result is not None:
        assert 0.0 <= result <= MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("value", "max_seconds", "seconds"),
    [
        ("120", 60.0, 60.0),
        ("inf", 10.0, 10.0),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 30.0, 30.0),
        ("120", 0.0, 0.0),
        ("120", -5.0, 0.0),  # a negative ceiling is 0
        ("1e12", float("inf"), MAX_RETRY_AFTER_SECONDS),  # a ceiling must be finite
        ("1e12", float("nan"), MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_parse_retry_after_ceiling(value: str, max_seconds: float, seconds: float) -> None:
    """``max_seconds`` caps the wait; a non-finite ceiling falls back to the default."""
    assert parse_retry_after(value, now=NOW, max_seconds=max_seconds) == seconds


@pytest.mark.parametrize(
    ("header", "max_retry_after", "seconds"),
    [
        ("1e12", MAX_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS),
        ("inf", 90.0, 90.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 90.0, 90.0),
        ("nan", 90.0, None),
    ],
)
def test_parse_consulta_bounds_retry_after(
    header: str, max_retry_after: float, seconds: float | None
) -> None:
    """A 429 passes ``max_retry_after`` down: its Retry-After is never unbounded."""
    result = parse_consulta(
        429,
        HTML,
        _read("too_many.html"),
        {"Retry-After": header},
        "4212345678",
        now=NOW,
        max_retry_after=max_retry_after,
    )
    assert result.outcome is Outcome.BLOCKED
    assert result.retry_after == seconds


# -- hostile answers: depth, size, field length ----------------------------------------------

FOUND_PLACE = Place(
    departamento="BOGOTA D.C.",
    municipio="BOGOTA. D.C.",
    puesto="COLEGIO DISTRITAL LA CANDELARIA",
    direccion="CL 12 # 2-45",
    mesa="7",
)


def test_deeply_nested_html_is_read() -> None:
    """The found table inside 20,000 nested divs still gives the place."""
    depth = 20_000
    html = _read("rendered_found.html").replace(
        '<div id="resultado">', '<div id="resultado">' + "<div>" * depth
    )
    html = html.replace("</table>", "</table>" + "</div>" * depth)
    result = parse_rendered_page(html, "1012345678")
    assert result.outcome is Outcome.FOUND, result.detail
    assert result.place == FOUND_PLACE


@pytest.mark.parametrize(
    "html",
    [
        "<div>" * 20_000
        + "El documento 2012345678 no se encuentra en el censo."
        + "</div>" * 20_000,
        "<span>" * 20_000 + "El documento 2012345678 no se encuentra en el censo.",  # never closed
        "<b><i>" * 10_000
        + "El documento 2012345678 no se encuentra en el censo."
        + "</b>" * 10_000,
        "</p>" * 20_000 + "El documento 2012345678 no se encuentra en el censo.",  # stray ends
    ],
    ids=["balanced", "unclosed", "misnested", "stray-end-tags"],
)
def test_deeply_nested_not_found_page(html: str) -> None:
    """20,000 levels of nesting, closed or not, leave the message readable and scrubbed."""
    result = parse_rendered_page(html, "2012345678")
    assert result.outcome is Outcome.NOT_FOUND
    assert result.detail == "El documento *******678 no se encuentra en el censo."


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        "[" * 100_000,
        '{"ok": true, "encontrado": true, "data": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001,
        '{"ok": true, "data": {"nom_depto": ' + "[" * 50_000 + "]" * 50_000 + "}}",
    ],
    ids=["list", "unclosed-list", "nested-objects", "nested-field"],
)
def test_deeply_nested_json_is_unexpected(body: str) -> None:
    """JSON nested 50,000+ deep is an unexpected page, never a RecursionError."""
    result = parse_consulta(200, JSON, body, {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert len(result.detail) <= EXCERPT_CHARS


def test_json_nested_just_below_the_recursion_limit_is_read() -> None:
    """A field nested a few hundred deep (json accepts it) gives a result, not a crash."""
    nested = "[" * 900 + "]" * 900
    body = (
        '{"ok": true, "encontrado": true, "data": {"nom_depto": "META", "nom_mun": ' + nested + "}}"
    )
    result = parse_consulta(200, JSON, body, {}, "1012345678")
    assert result.outcome in (Outcome.FOUND, Outcome.UNEXPECTED_PAGE)
    if result.place is not None:
        assert result.place.departamento == "META"
        assert len(result.place.municipio) <= MAX_FIELD_CHARS


def _huge_found_body(size: int) -> str:
    answer = {
        "ok": True,
        "encontrado": True,
        "data": {"nuip": "1012345678", "nom_depto": "META", "relleno": "x" * size},
    }
    return json.dumps(answer)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.UNEXPECTED_PAGE), (403, Outcome.BLOCKED)],
)
def test_json_body_over_the_cap_is_not_an_answer(status: int, outcome: Outcome) -> None:
    """A 20 MB JSON answer is not read whole and is not taken as the site's answer."""
    body = _huge_found_body(20 * 1024 * 1024)
    result = parse_consulta(status, JSON, body, {}, "1012345678")
    assert result.outcome is outcome
    assert result.place is None
    assert len(result.detail) <= EXCERPT_CHARS
    if outcome is Outcome.UNEXPECTED_PAGE:
        assert f"over {MAX_BODY_CHARS} characters" in result.detail
    _assert_scrubbed(result, "1012345678")


def test_json_body_just_under_the_cap_is_an_answer() -> None:
    """The cap does not refuse a legitimate answer of ordinary size."""
    body = _huge_found_body(MAX_BODY_CHARS - 200)
    assert len(body) <= MAX_BODY_CHARS
    result = parse_consulta(200, JSON, body, {}, "1012345678")
    assert result.outcome is Outcome.FOUND
    assert result.place == Place(departamento="META")


@pytest.mark.parametrize(
    ("status", "content_type", "outcome"),
    [
        (200, HTML, Outcome.UNEXPECTED_PAGE),
        (500, HTML, Outcome.CONNECTION_ERROR),
        (200, "text/plain", Outcome.UNEXPECTED_PAGE),
        (200, "x" * 100_000, Outcome.UNEXPECTED_PAGE),  # a hostile content type
    ],
)
def test_huge_non_json_body_is_bounded(status: int, content_type: str, outcome: Outcome) -> None:
    """A 20 MB page gives a bounded, scrubbed detail."""
    body = "<p>Mantenimiento 1012345678 " + "bla " * (5 * 1024 * 1024) + "</p>"
    result = parse_consulta(status, content_type, body, {}, "1012345678")
    assert result.outcome is outcome
    assert len(result.detail) <= EXCERPT_CHARS
    _assert_scrubbed(result, "1012345678")


def test_rendered_page_is_read_up_to_the_cap() -> None:
    """A result table placed after MAX_PAGE_CHARS of padding is not read."""
    padding = "<p>" + "x" * MAX_PAGE_CHARS + "</p>"
    html = _read("rendered_found.html").replace("<body>", "<body>" + padding)
    result = parse_rendered_page(html, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert len(result.detail) <= EXCERPT_CHARS


@pytest.mark.parametrize(
    "html",
    [
        "<a" * 125_000,
        "</" * 125_000,
        "<?" * 125_000,
        "<!" * 125_000,
        "<![CDATA[" * 28_000,
        "<" * 250_000,
        "<!--" * 62_000 + ">",
        '<a x="' + "y" * 250_000,
        "<td>" * 62_000,
        "&#" * 125_000,
    ],
    ids=[
        "start-tags",
        "end-tags",
        "pi",
        "declarations",
        "cdata",
        "lone-lt",
        "comments",
        "open-quote",
        "cells",
        "charrefs",
    ],
)
def test_malformed_markup_floods_are_read(html: str) -> None:
    """Unfinished constructs repeated over 250 KB give an unexpected page (the stdlib parser
    rescans the rest of the input for each one unless the parser steps in)."""
    result = parse_rendered_page(html, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert len(result.detail) <= EXCERPT_CHARS
    assert not is_f5_block(html)


@pytest.mark.parametrize("key", ["nom_depto", "nom_mun", "nom_puesto", "direccion", "mesa"])
def test_place_fields_are_cut(key: str) -> None:
    """Each place field of a found answer is at most MAX_FIELD_CHARS long."""
    data = {"nom_depto": "META", "nom_mun": "ACACIAS", key: "Z" * 10_000}
    result = parse_answer({"ok": True, "encontrado": True, "data": data}, "1012345678")
    assert result.outcome is Outcome.FOUND
    assert result.place is not None
    values = [getattr(result.place, name) for name in Place.__dataclass_fields__]
    assert all(len(value) <= MAX_FIELD_CHARS for value in values)
    assert "Z" * MAX_FIELD_CHARS in values


@pytest.mark.parametrize("key", ["mensaje", "resolucion", "fecha_novedad"])
def test_novedad_fields_are_cut_after_scrubbing(key: str) -> None:
    """Novedad fields are bounded, and a cédula near the cut is masked, not half shown."""
    long_text = (
        "Cancelada por Muerte " + "y" * (MAX_FIELD_CHARS - 26) + " 3012345678 " + "z" * 10_000
    )
    answer: dict[str, object] = {
        "ok": True,
        "novedad": True,
        "mensaje": "Cancelada por Muerte",
        "data": {"resolucion": "0123 de 2021", "fecha_novedad": "2021-05-14"},
    }
    if key == "mensaje":
        answer["mensaje"] = long_text
    else:
        answer["data"] = {**answer["data"], key: long_text}  # type: ignore[dict-item]
    result = parse_answer(answer, "3012345678")
    assert result.outcome is Outcome.CANCELLED
    assert result.novedad is not None
    fields = [result.novedad.novedad, result.novedad.resolucion, result.novedad.fecha_novedad]
    assert all(len(value) <= MAX_FIELD_CHARS for value in fields)
    assert not any("30123" in value for value in fields)


def test_rendered_table_cells_are_cut() -> None:
    """An over-long cell of the rendered result table is cut to MAX_FIELD_CHARS."""
    html = _read("rendered_found.html").replace("COLEGIO DISTRITAL", "COLEGIO " * 5_000)
    result = parse_rendered_page(html, "1012345678")
    assert result.outcome is Outcome.FOUND
    assert result.place is not None
    assert len(result.place.puesto) == MAX_FIELD_CHARS
    assert result.place.departamento == "BOGOTA D.C."


# -- signatures: which shape check an unexpected answer failed -------------------------------

CEDULA = "1012345678"
FOUND_BODY = json.dumps(
    {"ok": True, "encontrado": True, "data": {"nom_depto": "META", "nom_mun": "ACACIAS"}}
)


def _error_hash(normal_text: str) -> str:
    """The documented error hash, computed here from the already normalised text."""
    return hashlib.sha256(normal_text.encode("utf-8")).hexdigest()[:6]


def _consulta(status: int, content_type: str, body: str) -> Callable[[str], LookupResult]:
    return lambda cedula: parse_consulta(status, content_type, body, {}, cedula)


def _answer(answer: Any) -> Callable[[str], LookupResult]:
    return lambda cedula: parse_answer(answer, cedula)


def _page(html: str) -> Callable[[str], LookupResult]:
    return lambda cedula: parse_rendered_page(html, cedula)


def _table(header: list[str], row: list[str]) -> str:
    cells = "".join(f"<th>{cell}</th>" for cell in header)
    values = "".join(f"<td>{cell}</td>" for cell in row)
    return f'<div id="resultado"><table><tr>{cells}</tr><tr>{values}</tr></table></div>'


class _RecursingMapping(Mapping[str, Any]):
    """An answer whose reading recurses without end (a stand-in for a hostile structure)."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self)  # ``iter`` of itself: RecursionError

    def __len__(self) -> int:
        return 1


SIGNATURE_CASES = [
    # consulta: the HTTP envelope
    pytest.param(_consulta(404, HTML, "<p>Not Found</p>"), "consulta:status:404", id="404"),
    pytest.param(_consulta(418, "text/plain", "teapot"), "consulta:status:418", id="418"),
    pytest.param(_consulta(400, JSON, FOUND_BODY), "consulta:status:400", id="400-found-json"),
    pytest.param(_consulta(302, HTML, ""), "consulta:status:302", id="302"),
    pytest.param(_consulta(0, HTML, ""), "consulta:status:invalid", id="status-0"),
    pytest.param(_consulta(99, JSON, FOUND_BODY), "consulta:status:invalid", id="status-99"),
    pytest.param(
        _consulta(200, HTML, _read("malformed.html")), "consulta:html_page", id="html-page"
    ),
    pytest.param(
        _consulta(200, JSON, "  <html><body>Hola</body></html>"),
        "consulta:html_page",
        id="markup-as-json",
    ),
    pytest.param(
        _consulta(200, "text/plain", FOUND_BODY),
        "consulta:content_type:text/plain",
        id="text-plain",
    ),
    pytest.param(
        _consulta(200, HTML, FOUND_BODY), "consulta:content_type:text/html", id="json-as-html"
    ),
    pytest.param(_consulta(200, "", FOUND_BODY), "consulta:content_type:none", id="no-type"),
    pytest.param(
        _consulta(200, "Application/X-Thing; charset=1012345678", FOUND_BODY),
        "consulta:content_type:application/x-thing",
        id="parameters-dropped",
    ),
    pytest.param(
        _consulta(200, "text/1012345678", FOUND_BODY),
        "consulta:content_type:text/0",
        id="digits-in-type",
    ),
    pytest.param(
        _consulta(200, "TEXT/{évil} <x>", FOUND_BODY),
        "consulta:content_type:text/vilx",
        id="junk-in-type",
    ),
    pytest.param(
        _consulta(200, "x" * 100_000, FOUND_BODY),
        "consulta:content_type:" + "x" * 40,
        id="long-type",
    ),
    pytest.param(
        _consulta(200, JSON, _huge_found_body(MAX_BODY_CHARS)),
        "consulta:oversized",
        id="oversized",
    ),
    pytest.param(_consulta(200, JSON, ""), "consulta:empty_body", id="empty"),
    pytest.param(_consulta(204, JSON, " \n"), "consulta:empty_body", id="blank-204"),
    pytest.param(
        _consulta(200, JSON, '{"ok": true, "encontrado": tr'), "consulta:not_json", id="truncated"
    ),
    pytest.param(_consulta(200, JSON, "{not json"), "consulta:not_json", id="not-json"),
    pytest.param(_consulta(200, JSON, "[" * 100_000), "consulta:too_deep", id="too-deep"),
    pytest.param(_consulta(200, JSON, "[1, 2]"), "consulta:not_object", id="list"),
    pytest.param(_consulta(200, JSON, "null"), "consulta:not_object", id="null"),
    pytest.param(_consulta(200, JSON, '"ok"'), "consulta:not_object", id="string"),
    # answer: the decoded JSON
    pytest.param(_answer([{"ok": True}]), "answer:not_object", id="answer-list"),
    pytest.param(
        _answer({"ok": True, "OK": False, "encontrado": False}),
        "answer:duplicate_key:ok",
        id="ok-twice",
    ),
    pytest.param(
        _answer(
            {"ok": True, "encontrado": True, "data": {"nom_depto": "META", "NOM_DEPTO": "CESAR"}}
        ),
        "answer:duplicate_key:nom_depto",
        id="data-key-twice",
    ),
    pytest.param(_answer({"encontrado": True}), "answer:missing_field:ok", id="no-ok"),
    pytest.param(
        _answer({"respuesta": {"ok": True, "encontrado": True}}),
        "answer:missing_field:ok",
        id="wrapped",
    ),
    pytest.param(
        _answer({"ok": "true", "encontrado": False}), "answer:bad_type:ok", id="ok-string"
    ),
    pytest.param(_answer({"ok": 1, "encontrado": False}), "answer:bad_type:ok", id="ok-1"),
    pytest.param(_answer({"ok": None}), "answer:bad_type:ok", id="ok-null"),
    pytest.param(_answer({"ok": False}), "answer:missing_field:error", id="no-error"),
    pytest.param(
        _answer({"ok": False, "error": ""}), "answer:missing_field:error", id="empty-error"
    ),
    pytest.param(
        _answer({"ok": False, "error": {"code": 7}}), "answer:bad_type:error", id="error-object"
    ),
    pytest.param(
        _consulta(200, JSON, _read("error_other.json")),
        "answer:unknown_error:" + _error_hash("servicio no disponible para el documento 0"),
        id="unknown-error",
    ),
    pytest.param(
        _answer({"ok": False, "mensaje": "  Mantenimiento\tPROGRAMADO "}),
        "answer:unknown_error:" + _error_hash("mantenimiento programado"),
        id="unknown-mensaje",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": False, "data": "x"}),
        "answer:bad_type:data",
        id="data-string",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": True, "data": [{"nom_depto": "META"}]}),
        "answer:bad_type:data",
        id="data-list",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": "si"}), "answer:bad_type:encontrado", id="enc-string"
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": 1, "data": {"nom_depto": "META"}}),
        "answer:bad_type:encontrado",
        id="enc-1",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": None, "novedad": True}),
        "answer:bad_type:encontrado",
        id="enc-null-with-novedad",
    ),
    pytest.param(_answer({"ok": True}), "answer:missing_field:encontrado", id="ok-only"),
    pytest.param(
        _answer({"ok": True, "hallado": True, "data": {"nom_depto": "META"}}),
        "answer:missing_field:encontrado",
        id="renamed",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": True, "data": {"nom_depto": "META", "mesa": {}}}),
        "answer:bad_type:mesa",
        id="mesa-object",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": True, "data": {"nom_mun": ["ACACIAS"]}}),
        "answer:bad_type:nom_mun",
        id="nom-mun-list",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": True, "data": {"nom_depto": True}}),
        "answer:bad_type:nom_depto",
        id="nom-depto-bool",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": True, "data": {"nuip": CEDULA}}),
        "answer:found_without_place",
        id="found-no-place",
    ),
    pytest.param(_answer(_RecursingMapping()), "answer:too_deep", id="answer-too-deep"),
    pytest.param(
        _answer({"ok": True, "encontrado": False, "novedad": True}),
        "answer:novedad_without_text",
        id="novedad-without-text",
    ),
    pytest.param(
        _answer({"ok": True, "novedad": 1, "data": {"novedad": True, "resolucion": "1 de 2020"}}),
        "answer:novedad_without_text",
        id="novedad-only-flags",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": False, "novedad": "En verificación de identidad"}),
        "answer:unknown_novedad:" + _error_hash("en verificación de identidad"),
        id="novedad-unknown-wording",
    ),
    pytest.param(
        _answer(
            {
                "ok": True,
                "novedad": True,
                "mensaje": f"La cédula {CEDULA} presenta una novedad: Reservada",
                "descripcion": "Reservada",
            }
        ),
        "answer:unknown_novedad:" + _error_hash("reservada"),
        id="novedad-unknown-descripcion-first",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": False}),
        "answer:missing_field:mensaje",
        id="not-found-without-message",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": False, "mensaje": "  "}),
        "answer:missing_field:mensaje",
        id="not-found-blank-message",
    ),
    pytest.param(
        _answer(
            {
                "ok": True,
                "encontrado": False,
                "mensaje": f"La cédula {CEDULA} no registra información para esta elección",
            }
        ),
        "answer:unknown_message:"
        + _error_hash("la cédula 0 no registra información para esta elección"),
        id="not-found-reworded",
    ),
    pytest.param(
        _answer({"ok": True, "encontrado": False, "mensaje": "Consulta realizada"}),
        "answer:unknown_message:" + _error_hash("consulta realizada"),
        id="not-found-other-words",
    ),
    # page: the rendered page
    pytest.param(
        _page(_table(["NUIP", "DEPARTAMENTO", "MUNICIPIO", "MESA"], [CEDULA, "", "", "7"])),
        "page:found_without_place",
        id="page-found-no-place",
    ),
    pytest.param(
        _page(_table(["NUIP", "DEPTO", "CIUDAD"], [CEDULA, "META", "ACACIAS"])),
        "page:unknown_table",
        id="page-renamed-columns",
    ),
    pytest.param(
        _page(
            _table(["NUIP", "ESTADO"], [CEDULA, "VIGENTE"])
            + "<p>Si su documento no se encuentra en el censo, acuda a la Registraduría.</p>"
        ),
        "page:unknown_table",
        id="page-unknown-table-over-not-found-text",
    ),
    pytest.param(
        _page("<p>" + "x" * MAX_PAGE_CHARS + "</p>" + _read("rendered_found.html")),
        "page:oversized",
        id="page-oversized",
    ),
    pytest.param(
        _page(_read("page_with_captcha_challenge.html")),
        "page:missing_element:resultado",
        id="page-no-result",
    ),
    pytest.param(
        _page(_table(["NUIP", "NOVEDAD", "RESOLUCIÓN"], [CEDULA, "En verificación", "1 de 2020"])),
        "page:unknown_novedad:" + _error_hash("en verificación"),
        id="page-novedad-unknown-wording",
    ),
    pytest.param(
        _page(_table(["NUIP", "NOVEDAD", "RESOLUCIÓN"], [CEDULA, "", "1 de 2020"])),
        "page:novedad_without_text",
        id="page-novedad-without-text",
    ),
    pytest.param(
        _page(_read("server_error.html")), "page:missing_element:resultado", id="page-error"
    ),
]


@pytest.mark.parametrize(("call", "signature"), SIGNATURE_CASES)
def test_unexpected_signatures(call: Callable[[str], LookupResult], signature: str) -> None:
    """Each shape check that fails gives unexpected_page with its own documented signature."""
    result = call(CEDULA)
    assert result.outcome is Outcome.UNEXPECTED_PAGE, result
    assert result.meta["signature"] == signature
    assert unexpected_signature(result) == signature
    assert len(result.detail) <= EXCERPT_CHARS
    _assert_scrubbed(result, CEDULA)


def test_consulta_signature_keeps_the_http_status() -> None:
    """A signature from the answer comes back with the consulta's http_status beside it."""
    result = parse_consulta(200, JSON, '{"ok": true}', {}, CEDULA)
    assert result.meta == {"http_status": 200, "signature": "answer:missing_field:encontrado"}


def test_ok_without_encontrado_is_not_a_not_found() -> None:
    """``{"ok": true}`` alone was taken as not_found: it is an unknown shape now."""
    for answer in ({"ok": True}, {"ok": True, "mensaje": "Consulta realizada"}):
        result = parse_answer(answer, CEDULA)
        assert result.outcome is Outcome.UNEXPECTED_PAGE
        assert unexpected_signature(result) == "answer:missing_field:encontrado"


@pytest.mark.parametrize("found", [True, False])
def test_renamed_encontrado_is_never_a_final_answer(found: bool) -> None:
    """``encontrado`` renamed to ``hallado`` gives unexpected_page, neither found nor
    not_found, whatever the renamed flag says and whether or not a place comes with it."""
    answer = {
        "ok": True,
        "hallado": found,
        "data": {"nuip": CEDULA, "nom_depto": "META", "nom_mun": "ACACIAS", "mesa": "3"},
    }
    for result in (
        parse_answer(answer, CEDULA),
        parse_consulta(200, JSON, json.dumps(answer), {}, CEDULA),
    ):
        assert result.outcome is Outcome.UNEXPECTED_PAGE
        assert not result.outcome.is_answer
        assert result.place is None
        assert unexpected_signature(result) == "answer:missing_field:encontrado"


def test_wrapped_answer_is_missing_ok() -> None:
    """A known answer wrapped in another key is unexpected, named ``answer:missing_field:ok``."""
    inner = {"ok": True, "encontrado": True, "data": {"nom_depto": "META", "nom_mun": "ACACIAS"}}
    result = parse_consulta(200, JSON, json.dumps({"respuesta": inner}), {}, CEDULA)
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert result.place is None
    assert unexpected_signature(result) == "answer:missing_field:ok"


@pytest.mark.parametrize(
    "cedula", ["1012345678", "5512345678", "31234567", "987654", "4321", "777"]
)
def test_error_signature_carries_no_cedula_digits(cedula: str) -> None:
    """An error text echoing the cédula (plain or dotted) gives a signature without its
    digits: the same signature for every cédula, naming the text with the number as ``0``."""
    dotted = f"{int(cedula):,}".replace(",", ".")
    expected = "answer:unknown_error:" + _error_hash(
        "el documento 0 (0) no está habilitado en este momento"
    )
    body = json.dumps(
        {
            "ok": False,
            "error": f"El documento {cedula} ({dotted}) no está habilitado en este momento",
        }
    )
    result = parse_consulta(200, JSON, body, {}, cedula)
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert unexpected_signature(result) == expected
    runs = {cedula[i : i + 3] for i in range(len(cedula) - 2)}
    assert not any(run in expected for run in runs), (cedula, expected)
    _assert_scrubbed(result, cedula)


def test_error_texts_differing_in_digits_share_a_signature() -> None:
    """Error texts that differ only in their numbers (values and lengths) share one
    signature; a different text gets a different one."""
    template = "Error {} del servicio de consulta ({} registros)"
    signatures = {
        unexpected_signature(
            parse_answer({"ok": False, "error": template.format(ms, size)}, CEDULA)
        )
        for ms, size in [("15008", "0"), ("15001", "0"), ("9998", "12"), ("120000", "1.024")]
    }
    assert len(signatures) == 1
    (signature,) = signatures
    assert signature.startswith("answer:unknown_error:")
    other = parse_answer({"ok": False, "error": "Could not resolve host: 15008"}, CEDULA)
    assert unexpected_signature(other) not in ("", signature)


def test_the_backends_own_timeout_is_a_connection_error_not_a_site_change() -> None:
    """The backend's own "Curl error: Operation timed out ..." (census-site.md: transient) is
    retried as a connection error: it must never count toward the site-changed breaker."""
    text = "Curl error: Operation timed out after 15008 milliseconds with 0 bytes received"
    result = parse_answer({"ok": False, "error": text}, CEDULA)
    assert result.outcome is Outcome.CONNECTION_ERROR
    assert unexpected_signature(result) == ""


def test_captcha_rejection_keeps_its_meaning_under_a_4xx() -> None:
    """A captcha rejection sent with a 400 stays captcha_failed (no signature); any other
    answer under that status is ``consulta:status:400``."""
    result = parse_consulta(400, JSON, _read("captcha_rejected.json"), {}, CEDULA)
    assert result.outcome is Outcome.CAPTCHA_FAILED
    assert "signature" not in result.meta
    result = parse_consulta(400, JSON, _read("not_found.json"), {}, "2012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert unexpected_signature(result) == "consulta:status:400"


def test_signature_of_other_outcomes_is_empty() -> None:
    """``unexpected_signature`` is "" for an outcome other than unexpected_page, even with a stray
    signature in its meta."""
    found = parse_consulta(200, JSON, FOUND_BODY, {}, CEDULA)
    assert found.outcome is Outcome.FOUND
    assert unexpected_signature(found) == ""
    stray = LookupResult(outcome=Outcome.BLOCKED, meta={"signature": "consulta:html_page"})
    assert unexpected_signature(stray) == ""


# -- property: every unexpected result is signed, in the vocabulary, cédula-free -------------

#: A signature's shape, and what its last part may hold for each check.
_SIGNATURE_SHAPE = re.compile(r"(consulta|answer|page):[a-z_]+(?::([a-z0-9./+_-]+))?")
_HASH = re.compile(r"[0-9a-f]{6}")
#: The checks whose signature ends in the hash of a text (an error, a novelty, a message).
_HASHED_CHECKS = ("unknown_error", "unknown_novedad", "unknown_message")
_STATUS = re.compile(r"[1-4][0-9]{2}|invalid")

PLACEHOLDER = "{c}"
TWO_CEDULAS = ("1012345678", "59876543")


def _assert_well_formed(signature: str) -> None:
    assert len(signature) <= SIGNATURE_CHARS
    assert signature == signature.lower()
    match = _SIGNATURE_SHAPE.fullmatch(signature)
    assert match, signature
    check = signature.split(":")[1]
    detail = match.group(2) or ""
    if check == "status":
        assert _STATUS.fullmatch(detail), signature
    elif check in _HASHED_CHECKS:
        assert _HASH.fullmatch(detail), signature
    elif check == "content_type":
        assert len(detail) <= 40
        assert not re.search(r"[0-9]{3}", detail), signature
    else:
        assert not re.search(r"[0-9]", signature), signature
        if detail:
            assert detail in SIGNATURE_FIELDS, signature


def _odd_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of the kinds an answer could carry, cédula placeholders included."""
    scalars: list[Any] = [
        True,
        False,
        None,
        0,
        1,
        7,
        "",
        "true",
        "META",
        PLACEHOLDER,
        f"Error para {PLACEHOLDER} a las 12:30:05",
        "Captcha inválido",
        "Curl error: Operation timed out after 15008 milliseconds",
        "Cancelada por Muerte",
    ]
    if depth < 3 and rng.random() < 0.3:
        if rng.random() < 0.5:
            return [_odd_value(rng, depth + 1) for _ in range(rng.randint(0, 2))]
        return _odd_object(rng, depth + 1)
    return rng.choice(scalars)


_TOP_KEYS = [
    "ok",
    "OK",
    "Ok",
    "encontrado",
    "ENCONTRADO",
    "hallado",
    "data",
    "DATA",
    "novedad",
    "error",
    "mensaje",
    "descripcion",
    "respuesta",
]
_DATA_KEYS = ["nuip", "nom_depto", "NOM_DEPTO", "nom_mun", "nom_puesto", "mesa", "novedad"]


def _odd_object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = rng.sample(_TOP_KEYS if depth == 0 else _TOP_KEYS + _DATA_KEYS, rng.randint(0, 5))
    answer = {key: _odd_value(rng, depth + 1) for key in keys}
    if "data" in answer and rng.random() < 0.6:
        data_keys = rng.sample(_DATA_KEYS, rng.randint(0, 4))
        answer["data"] = {key: _odd_value(rng, depth + 1) for key in data_keys}
    if rng.random() < 0.5:
        answer["ok"] = rng.choice([True, False])
    if rng.random() < 0.3:
        answer["encontrado"] = rng.choice([True, False])
    return answer


def _odd_page(rng: random.Random) -> str:
    headers = ["NUIP", "DEPARTAMENTO", "MUNICIPIO", "PUESTO", "NOVEDAD", "DEPTO", "ESTADO"]
    header = rng.sample(headers, rng.randint(0, 4))
    row = [rng.choice(["", PLACEHOLDER, "META", "Cancelada por Muerte"]) for _ in header]
    parts = [
        _table(header, row) if header else "",
        rng.choice(["", f"<p>El documento {PLACEHOLDER} no se encuentra en el censo.</p>"]),
        rng.choice(["", "<div class='blocked'><h3>The requested URL was rejected</h3></div>"]),
        rng.choice(["", "<p>Mantenimiento</p>", "<a<a<a", "<td>" * 3]),
    ]
    rng.shuffle(parts)
    return "<html><body>" + "".join(parts) + "</body></html>"


def _odd_calls(rng: random.Random) -> Iterator[Callable[[str], LookupResult]]:
    """One odd consulta response, answer and page, each a template for any cédula."""
    body = json.dumps(_odd_object(rng)) if rng.random() < 0.8 else json.dumps(_odd_value(rng))
    body = rng.choice([body, body, body, body[: rng.randint(0, len(body))], _odd_page(rng)])
    status = rng.choice([200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 418, 0, 503])
    content_type = rng.choice(
        [JSON, JSON, HTML, "text/plain", "", "application/problem+json", f"text/{PLACEHOLDER}"]
    )
    answer = _odd_object(rng)
    page = _odd_page(rng)

    def fill(template: str, cedula: str) -> str:
        return template.replace(PLACEHOLDER, cedula)

    yield lambda c: parse_consulta(status, fill(content_type, c), fill(body, c), {}, c)
    yield lambda c: parse_answer(json.loads(fill(json.dumps(answer), c)), c)
    yield lambda c: parse_rendered_page(fill(page, c), c)


def test_every_unexpected_result_is_signed() -> None:
    """Over thousands of odd responses, answers and pages: every unexpected_page carries a
    well-formed signature of the documented vocabulary, with no cédula digit, the same
    whichever cédula the input echoes; no other outcome carries one."""
    rng = random.Random(20260101)
    seen: set[str] = set()
    unexpected = 0
    for _ in range(1500):
        for call in _odd_calls(rng):
            first, second = (call(cedula) for cedula in TWO_CEDULAS)
            assert first.outcome is second.outcome
            if first.outcome is not Outcome.UNEXPECTED_PAGE:
                assert "signature" not in first.meta
                assert unexpected_signature(first) == ""
                continue
            unexpected += 1
            signature = first.meta.get("signature")
            assert isinstance(signature, str) and signature, first
            assert unexpected_signature(second) == signature
            _assert_well_formed(signature)
            for cedula, result in zip(TWO_CEDULAS, (first, second), strict=True):
                assert cedula not in repr(result)
            hashed = signature.split(":")[1] in _HASHED_CHECKS
            seen.add(signature.rsplit(":", 1)[0] if hashed else signature)
    assert unexpected > 1000
    assert len(seen) > 15, sorted(seen)


PAGE_CEDULA = "1234567890"


@pytest.mark.parametrize(
    "page",
    [
        "<p>Documento &#49;&#50;34567890</p>",  # digits written as references
        "<p>Documento 1&#50;3&#52;567890</p>",
        "<p>Documento 1<b>" + "<i>" * 9 + "234567890</p>",  # more tags than a gap holds
    ],
)
def test_scrub_page_keeps_the_visible_text_when_markup_hides_the_number(page: str) -> None:
    """Where the markup cannot be scrubbed with confidence, only the visible text is kept,
    scrubbed, under a line that says so."""
    kept = scrub_page(
        "<html><body>" + page + "<script>var a=1;</script></body></html>", PAGE_CEDULA
    )
    assert kept == f"{VISIBLE_TEXT_ONLY}\nDocumento {mask(PAGE_CEDULA)}"


def test_scrub_page_keeps_markup_it_could_scrub() -> None:
    """A page whose every echo ``scrub`` masked keeps its markup."""
    page = "<html><body><td>1&nbsp;234&nbsp;567&nbsp;890</td><td>Mesa 3</td></body></html>"
    assert scrub_page(page, PAGE_CEDULA) == page.replace(
        "1&nbsp;234&nbsp;567&nbsp;890", mask(PAGE_CEDULA)
    )


def test_scrub_page_reads_a_hostile_page_like_any_other() -> None:
    """Markup that makes ``HTMLParser.close`` rescan (``<a<a<a...``) is read with the
    parser's bounded reader: the number after it is found and masked."""
    page = "<a" * 60_000 + "<p>Documento &#49;234567890</p>"
    kept = scrub_page(page, PAGE_CEDULA)
    assert kept.startswith(VISIBLE_TEXT_ONLY) and mask(PAGE_CEDULA) in kept
    assert PAGE_CEDULA not in kept


# -- wordings: what a novelty or a not-found answer says, and coddivipol ---------------------

RIGHTS = AnswerReason.RIGHTS_SUSPENDED
#: Real novelty wordings (census-site.md) and what each answer is.
NOVELTIES: list[tuple[str, Outcome, AnswerReason | None]] = [
    ("Cancelada por Muerte", Outcome.CANCELLED, None),
    ("Cancelada por Doble Cedulación", Outcome.CANCELLED, None),
    ("Cancelada por Falsa Identidad", Outcome.CANCELLED, None),
    ("Cancelada por Pérdida o Suspensión de los Derechos Políticos", Outcome.CANCELLED, RIGHTS),
    ("Vigente con Pérdida o Suspensión de los Derechos Políticos", Outcome.CANCELLED, RIGHTS),
    ("Baja por Pérdida o Suspensión de los Derechos Políticos", Outcome.CANCELLED, RIGHTS),
    ("no se encuentra habilitado para votar", Outcome.NOT_FOUND, AnswerReason.NOT_ENABLED),
    ("Pendiente por Solicitud en proceso", Outcome.NOT_FOUND, AnswerReason.PENDING_REQUEST),
]


def _novelty_answer(text: str, cedula: str = CEDULA) -> dict[str, Any]:
    """A novelty answer shaped as the simulator's: the text in ``data.novedad`` too."""
    return {
        "ok": True,
        "encontrado": False,
        "novedad": True,
        "mensaje": f"La cédula {cedula} presenta una novedad: {text}",
        "descripcion": text,
        "data": {
            "nuip": cedula,
            "novedad": text,
            "resolucion": "0042 de 2024",
            "fecha_novedad": "2024-03-01",
        },
    }


def _upper_keys(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        key.upper(): _upper_keys(value) if isinstance(value, dict) else value
        for key, value in answer.items()
    }


@pytest.mark.parametrize(("text", "outcome", "reason"), NOVELTIES)
def test_a_novelty_is_what_its_wording_says(
    text: str, outcome: Outcome, reason: AnswerReason | None
) -> None:
    """Each real novelty wording gives its outcome and reason and keeps its text, resolution
    and date, whatever the key case; the answer is a known shape (no signature)."""
    expected = Novedad(novedad=text, resolucion="0042 de 2024", fecha_novedad="2024-03-01")
    for answer in (_novelty_answer(text), _upper_keys(_novelty_answer(text))):
        result = parse_answer(answer, CEDULA)
        assert (result.outcome, result.reason) == (outcome, reason), result
        assert result.novedad == expected
        assert result.place is None and unexpected_signature(result) == ""
        _assert_scrubbed(result, CEDULA)


@pytest.mark.parametrize(
    "answer",
    [
        # The wording only in descripcion (novedad a number), as the fixtures' older shape.
        {
            "ok": True,
            "novedad": 1,
            "descripcion": "VIGENTE CON PERDIDA O SUSPENSION DE LOS DERECHOS POLITICOS",
        },
        # In a string flag that is no wording, then in descripcion.
        {
            "ok": True,
            "novedad": "S",
            "descripcion": "Baja  por pérdida o suspensión de derechos políticos",
        },
        # Only in the message, which echoes the cédula.
        {
            "ok": True,
            "novedad": True,
            "mensaje": f"La cédula {CEDULA} presenta una novedad: "
            "Vigente con Pérdida o Suspensión de los Derechos Políticos",
        },
    ],
)
def test_a_novelty_reads_the_first_of_its_texts_in_a_known_wording(answer: dict[str, Any]) -> None:
    """The flag's text, descripcion and mensaje are read in turn; the one in a known wording
    says what the answer is and is the text kept (scrubbed)."""
    result = parse_answer(answer, CEDULA)
    assert (result.outcome, result.reason) == (Outcome.CANCELLED, RIGHTS)
    assert result.novedad is not None and "Derechos" in result.novedad.novedad.title()
    _assert_scrubbed(result, CEDULA)


def test_a_novelty_in_words_nobody_knows_is_unexpected_not_cancelled() -> None:
    """A novelty was cancelled whatever it said: in unknown words it is an answer in no known
    shape, with the same signature for every cédula, and nothing of it is kept as a novedad."""
    results = [
        parse_answer(_novelty_answer("En verificación de identidad", cedula), cedula)
        for cedula in TWO_CEDULAS
    ]
    assert {r.outcome for r in results} == {Outcome.UNEXPECTED_PAGE}
    assert {r.novedad for r in results} == {None}
    (signature,) = {unexpected_signature(r) for r in results}
    assert signature == "answer:unknown_novedad:" + _error_hash("en verificación de identidad")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("La cédula {c} no se encuentra en el censo para esta elección", None),
        ("LA CÉDULA {c} NO SE ENCUENTRA EN EL CENSO PARA ESTA ELECCIÓN", None),
        ("la cedula {c} no  se\u00a0encuentra en el\tcenso para esta eleccion", None),
        ("La cédula {c} no se encuentra habilitada para votar", AnswerReason.NOT_ENABLED),
        ("Pendiente por Solicitud en proceso", AnswerReason.PENDING_REQUEST),
    ],
)
def test_not_found_needs_its_words(message: str, reason: AnswerReason | None) -> None:
    """``encontrado: false`` is not_found when its message says so, in any accents, case and
    spacing; a not-enabled or in-process message keeps its text as the novedad."""
    text = message.format(c=CEDULA)
    result = parse_answer({"ok": True, "encontrado": False, "mensaje": text}, CEDULA)
    assert (result.outcome, result.reason) == (Outcome.NOT_FOUND, reason)
    assert mask(CEDULA) in result.detail or "{c}" not in message
    assert (result.novedad is not None) is (reason is not None)
    _assert_scrubbed(result, CEDULA)


def test_a_reworded_not_found_is_unexpected_never_a_silent_not_found() -> None:
    """Without "no se encuentra en el censo" (nor another known wording) an ``encontrado:
    false`` answer is unexpected, signed the same for every cédula, through parse_consulta
    too; descripcion is read when mensaje is absent."""
    template = "La cédula {} no registra información para esta elección"
    results = [
        parse_consulta(
            200,
            JSON,
            json.dumps({"ok": True, "encontrado": False, "mensaje": template.format(c)}),
            {},
            c,
        )
        for c in TWO_CEDULAS
    ]
    assert {r.outcome for r in results} == {Outcome.UNEXPECTED_PAGE}
    (signature,) = {unexpected_signature(r) for r in results}
    assert signature == "answer:unknown_message:" + _error_hash(template.format(0).lower())
    described = parse_answer(
        {"ok": True, "encontrado": False, "descripcion": "No se encuentra en el censo"}, CEDULA
    )
    assert described.outcome is Outcome.NOT_FOUND


def test_a_cancellation_worded_in_a_not_found_message_is_cancelled() -> None:
    """The words decide, not the flag: "Cancelada por …" in the message of an answer without
    a novelty flag is cancelled, with its text."""
    answer = {
        "ok": True,
        "encontrado": False,
        "mensaje": "Cancelada por Muerte",
        "data": {"resolucion": "0042 de 2024", "fecha_novedad": "2024-03-01"},
    }
    result = parse_answer(answer, CEDULA)
    assert (result.outcome, result.reason) == (Outcome.CANCELLED, None)
    assert result.novedad == Novedad(
        novedad="Cancelada por Muerte", resolucion="0042 de 2024", fecha_novedad="2024-03-01"
    )


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("1600101", "1600101"),
        (1600101, "1600101"),
        (" 157301924 ", "157301924"),
        ("0" * MAX_CODE_DIGITS, "0" * MAX_CODE_DIGITS),
        ("1" * (MAX_CODE_DIGITS + 1), ""),
        ("16-001-01", ""),
        ("16001 01", ""),
        ("ABC123", ""),
        ("１６００１", ""),  # fullwidth digits
        ("", ""),
        (None, ""),
        (True, ""),
        (1.5, ""),
        ({"code": "1600101"}, ""),
        (["1600101"], ""),
        (CEDULA, ""),
        ("16" + CEDULA, ""),
        pytest.param(10**5000, "", id="int-too-long-to-print"),
    ],
)
def test_coddivipol_is_kept_only_as_digits_without_the_cedula(value: Any, kept: str) -> None:
    """A found answer's coddivipol is kept when it is 1 to MAX_CODE_DIGITS ASCII digits and
    does not contain the cédula; anything else is dropped, and the answer is still found."""
    data = {"nom_depto": "META", "nom_mun": "ACACIAS", "coddivipol": value}
    result = parse_answer({"ok": True, "encontrado": True, "data": data}, CEDULA)
    assert result.outcome is Outcome.FOUND
    assert result.place is not None and result.place.coddivipol == kept
    assert CEDULA not in result.place.coddivipol


@pytest.mark.parametrize("key", ["coddivipol", "CODDIVIPOL", "CodDivipol"])
def test_coddivipol_is_read_in_any_key_case(key: str) -> None:
    """The code is read whatever its key's case; an answer without it has an empty one."""
    data = {"nom_depto": "META", "nom_mun": "ACACIAS", key: "5000101"}
    result = parse_answer({"ok": True, "encontrado": True, "data": data}, CEDULA)
    assert result.place is not None and result.place.coddivipol == "5000101"
    del data[key]
    result = parse_answer({"ok": True, "encontrado": True, "data": data}, CEDULA)
    assert result.place is not None and result.place.coddivipol == ""


@pytest.mark.parametrize(("text", "outcome", "reason"), NOVELTIES)
def test_the_rendered_novelty_table_is_read_by_its_wording(
    text: str, outcome: Outcome, reason: AnswerReason | None
) -> None:
    """The page's NOVEDAD cell is read against the same table as the JSON answer."""
    html = _table(
        ["NUIP", "NOVEDAD", "RESOLUCIÓN", "FECHA NOVEDAD"], [CEDULA, text, "7 de 2020", "2020"]
    )
    result = parse_rendered_page(html, CEDULA)
    assert (result.outcome, result.reason) == (outcome, reason)
    assert result.novedad == Novedad(novedad=text, resolucion="7 de 2020", fecha_novedad="2020")
