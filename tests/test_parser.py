"""The pure parser: saved consulta responses and rendered pages in, ``LookupResult`` out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from census.outcomes import Outcome
from census.scraper.base import Novedad, Place
from census.scraper.parser import (
    EXCERPT_CHARS,
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
    result = parse_rendered_page(_read(fixture), cedula)
    assert result.outcome is outcome, result.detail
    _assert_scrubbed(result, cedula)


def test_rendered_found_reads_the_table() -> None:
    result = parse_rendered_page(_read("rendered_found.html"), "1012345678")
    assert result.place == Place(
        departamento="BOGOTA D.C.",
        municipio="BOGOTA. D.C.",
        puesto="COLEGIO DISTRITAL LA CANDELARIA",
        direccion="CL 12 # 2-45",
        mesa="7",
    )


def test_rendered_cancelled_reads_the_table() -> None:
    result = parse_rendered_page(_read("rendered_cancelled.html"), "30123456")
    assert result.novedad == Novedad(
        novedad="Cancelada por Muerte", resolucion="0123 de 2021", fecha_novedad="2021-05-14"
    )


def test_rendered_not_found_keeps_the_message_scrubbed() -> None:
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
    result = parse_answer(answer, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert detail in result.detail
    assert "1012345678" not in result.detail


def test_detail_is_bounded_and_scrubbed_before_cutting() -> None:
    body = "x" * (EXCERPT_CHARS - 5) + "1012345678" + "y" * 1000
    result = parse_consulta(200, "text/plain", body, {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert len(result.detail) <= EXCERPT_CHARS
    assert "10123" not in result.detail


def test_not_json_body_is_unexpected() -> None:
    result = parse_consulta(200, JSON, "{not json", {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    result = parse_consulta(200, JSON, "[1, 2]", {}, "1012345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE


def test_challenge_word_never_blocks() -> None:
    html = "<html><body><h3>Please solve this challenge</h3><p>challenge</p></body></html>"
    assert not is_f5_block(html)
    assert parse_consulta(200, HTML, html, {}, "1").outcome is Outcome.UNEXPECTED_PAGE


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1767225600.0) == seconds
