"""The pure parser: saved consulta responses and rendered pages in, ``LookupResult`` out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from census.limits import MAX_RETRY_AFTER_SECONDS
from census.outcomes import Outcome
from census.scraper.base import Novedad, Place
from census.scraper.parser import (
    EXCERPT_CHARS,
    MAX_BODY_CHARS,
    MAX_FIELD_CHARS,
    MAX_PAGE_CHARS,
    is_f5_block,
    parse_answer,
    parse_consulta,
    parse_rendered_page,
    parse_retry_after,
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
    long_text = "y" * (MAX_FIELD_CHARS - 5) + " 3012345678 " + "z" * 10_000
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
