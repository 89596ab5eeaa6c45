"""The census site simulator, over real HTTP with urllib; one Chromium test renders the page
under each layout change (the scraper's Chromium tests live elsewhere)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from census.cedula import mask
from census.outcomes import AnswerReason, Outcome
from census.scraper.parser import parse_answer, unexpected_signature
from census.testing import answers
from census.testing.simulator import (
    BLOCK_PATH,
    DEEP_HTML_LEVELS,
    DEEP_JSON_LEVELS,
    HUGE_BODY_BYTES,
    HUGE_JSON_BYTES,
    LAYOUT_KINDS,
    LAYOUT_PATH,
    SITE_KEY,
    THIRD_PARTY_IMAGE,
    THIRD_PARTY_SCRIPT,
    UNBLOCK_PATH,
    AccessRecord,
    CensusSimulator,
    _huge_body,
    _is_loopback_client,
    cedula_key,
    scenario_for,
    solve_captcha,
)
from tests.sites import (
    FOUND_KEYS,
    SIM_RETRY_AFTER,
    SIM_SLOW_SECONDS,
    FakeClock,
    command_env,
    django_command,
    stop_command,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)
    #: Seconds between sending the request and reading the whole answer.
    elapsed: float = 0.0


def fetch(url: str, payload: object = None, *, raw: bytes | None = None) -> Response:
    """GET, or POST ``payload`` as JSON; HTTP errors come back as responses too."""
    data = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            status, headers, body = res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, dict(err.headers), err.read()
        err.close()
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError is not a ValueError: the deep_json scenario raises it.
        parsed = None
    return Response(status, headers, body, parsed, time.monotonic() - started)


def token_for(sim: CensusSimulator | str, cedula: str = "") -> str:
    """Click the checkbox as the widget does: POST userverify with the typed cédula."""
    base = sim if isinstance(sim, str) else sim.base_url
    res = fetch(f"{base}/recaptcha/api2/userverify", {"k": SITE_KEY, "documento": cedula})
    return res.json.get("token", "")


def consulta(sim: CensusSimulator | str, cedula: str, token: str | None = None) -> Response:
    """Submit the form (to a simulator or a base URL): a fresh token unless one is given."""
    base = sim if isinstance(sim, str) else sim.base_url
    if token is None:
        token = token_for(base, cedula)
    payload = {"documento": cedula, "eleccionId": 0, "captchaToken": token}
    return fetch(f"{base}/back/api/consulta", payload)


# -- scenario table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cedula", "name"),
    [
        ("1012345678", "found"),
        ("1112345678", "found_locality"),
        ("1212345678", "found_upper"),
        ("1312345678", "found_without_coddivipol"),
        ("1412345678", "found"),
        ("2012345678", "not_found"),
        ("2112345678", "not_found_reworded"),
        ("2212345678", "found"),
        ("3012345678", "cancelled_death"),
        ("3112345678", "cancelled_double"),
        ("3212345678", "cancelled_rights"),
        ("3312345678", "novedad_rights_valid"),
        ("3412345678", "novedad_rights_removed"),
        ("3512345678", "novedad_not_enabled"),
        ("3612345678", "novedad_pending"),
        ("3712345678", "cancelled_false_identity"),
        ("3812345678", "novedad_unknown"),
        ("3912345678", "found"),
        ("4012345678", "blocked_page"),
        ("4112345678", "blocked_403"),
        ("4212345678", "blocked_429"),
        ("5012345678", "captcha_challenge"),
        ("5112345678", "token_rejected"),
        ("6012345678", "slow"),
        ("6112345678", "reset"),
        ("6212345678", "server_error"),
        ("6312345678", "malformed"),
        ("7102345678", "flaky_blocked_page"),
        ("7912345678", "flaky_server_error"),
        ("7322345678", "flaky_reset"),
        ("7432345678", "flaky_token_rejected"),
        ("7542345678", "flaky_slow"),
        ("7652345678", "flaky_blocked_429"),
        ("8012345678", "blocked_429_retry_inf"),
        ("8112345678", "blocked_429_retry_huge"),
        ("8212345678", "blocked_429_retry_date_9999"),
        ("8312345678", "blocked_429_retry_negative"),
        ("8412345678", "huge_body"),
        ("8512345678", "deep_html"),
        ("8612345678", "deep_json"),
        ("8712345678", "found_long_fields"),
        ("8812345678", "cancelled_long_fields"),
        ("803", "blocked_429_retry_inf"),
        ("8912345678", "huge_json"),
        ("9012345678", "redirect_off_site"),
        ("403", "blocked_page"),
        ("7062345678", "found"),
        ("7162345678", "found"),
        ("9912345678", "found"),
        ("1", "found"),
        ("72", "found"),
    ],
)
def test_scenario_for_follows_the_prefix_table(cedula: str, name: str) -> None:
    """scenario_for maps leading digits to the documented scenario names; the rest is found."""
    assert scenario_for(cedula) == name


# -- page and widget --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/consultar/", "/"])
def test_page_has_the_real_form_structure(sim: CensusSimulator, path: str) -> None:
    """The page carries #consultaForm, #documento, #eleccion, #submitBtn and the captcha div."""
    res = fetch(sim.base_url + path)
    html = res.body.decode()
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("text/html")
    for marker in ('id="consultaForm"', 'id="documento"', 'id="eleccion"', 'id="submitBtn"'):
        assert marker in html
    assert f'class="g-recaptcha" data-sitekey="{SITE_KEY}"' in html
    assert 'src="/recaptcha/api.js"' in html


def test_widget_renders_recaptcha_iframe_and_response_textarea(sim: CensusSimulator) -> None:
    """api.js builds an iframe whose src contains "recaptcha" and textarea#g-recaptcha-response."""
    script = fetch(f"{sim.base_url}/recaptcha/api.js").body.decode()
    assert '"/recaptcha/api2/anchor?' in script
    assert '"g-recaptcha-response"' in script
    assert '"recaptcha challenge expires in two minutes"' in script
    anchor = fetch(f"{sim.base_url}/recaptcha/api2/anchor?k={SITE_KEY}")
    assert anchor.status == 200
    assert 'id="recaptcha-anchor"' in anchor.body.decode()


def test_widget_text_says_challenge_harmlessly(sim: CensusSimulator) -> None:
    """The checkbox frame mentions "challenge", as the real one does, on every cédula."""
    assert "challenge" in fetch(f"{sim.base_url}/recaptcha/api2/anchor").body.decode()


def test_page_script_posts_the_real_payload(sim: CensusSimulator) -> None:
    """The page JS posts documento, eleccionId and captchaToken and draws both result tables."""
    script = fetch(f"{sim.base_url}/static/consulta.js").body.decode()
    assert '"/back/api/consulta"' in script
    for key in ("documento:", "eleccionId:", "captchaToken:"):
        assert key in script
    assert '"NUIP", "DEPARTAMENTO", "MUNICIPIO", "PUESTO", "DIRECCIÓN", "MESA"' in script
    assert '"NUIP", "NOVEDAD", "RESOLUCIÓN", "FECHA NOVEDAD"' in script


def test_elecciones_lists_the_current_election(sim: CensusSimulator) -> None:
    """GET /back/api/elecciones answers ok with id 0 "LUGAR DE VOTACION ACTUAL"."""
    res = fetch(f"{sim.base_url}/back/api/elecciones")
    assert res.json["ok"] is True
    assert res.json["data"][0]["id"] == 0
    assert res.json["data"][0]["nombre"] == "LUGAR DE VOTACION ACTUAL"
    assert res.json["data"][0]["mensaje"]


def test_unknown_path_is_404(sim: CensusSimulator) -> None:
    """Paths the site does not have answer 404."""
    assert fetch(f"{sim.base_url}/admin/").status == 404


# -- answers ----------------------------------------------------------------------------------


def test_found_answer_has_lower_case_data_and_map(sim: CensusSimulator) -> None:
    """Prefix 10: ok, encontrado, data with the eight lower-case keys, mapa lat/lng/url."""
    res = consulta(sim, "1012345678")
    assert res.status == 200
    assert res.json["ok"] is True and res.json["encontrado"] is True
    assert set(res.json["data"]) == FOUND_KEYS
    assert res.json["data"]["nuip"] == "1012345678"
    assert all(res.json["data"][key] for key in FOUND_KEYS)
    assert set(res.json["mapa"]) == {"lat", "lng", "url"}


def test_found_locality_puts_the_school_in_direccion(sim: CensusSimulator) -> None:
    """Prefix 11: nom_puesto is a Bogotá locality, direccion a school name (no street)."""
    data = consulta(sim, "1112345678").json["data"]
    assert data["nom_mun"] == "BOGOTA. D.C."
    assert not any(ch.isdigit() for ch in data["nom_puesto"])
    assert "#" not in data["direccion"]


def test_found_upper_has_upper_case_keys(sim: CensusSimulator) -> None:
    """Prefix 12: the data keys come in UPPER case."""
    data = consulta(sim, "1212345678").json["data"]
    assert set(data) == {key.upper() for key in FOUND_KEYS}


def test_found_data_is_deterministic_per_cedula(sim: CensusSimulator) -> None:
    """The same cédula always gets the same place; different cédulas spread over places."""
    first = consulta(sim, "9900000001").json
    again = consulta(sim, "9900000001").json
    assert first == again
    places = {json.dumps(consulta(sim, f"99000000{n:02d}").json["data"]) for n in range(10)}
    assert len(places) > 5


def test_not_found_reworded_lacks_the_phrase(sim: CensusSimulator) -> None:
    """Prefix 21: a not-found answer whose message echoes the number without "no se
    encuentra en el censo"; census reads it as unexpected, never as not found."""
    res = consulta(sim, "2112345678").json
    assert res["ok"] is True and res["encontrado"] is False and "novedad" not in res
    assert res["mensaje"] == answers.REWORDED_NOT_FOUND.format(cedula="2112345678")
    assert "no se encuentra en el censo" not in res["mensaje"]
    result = parse_answer(res, "2112345678")
    assert result.outcome is Outcome.UNEXPECTED_PAGE
    assert unexpected_signature(result).startswith("answer:unknown_message:")


def test_found_answers_carry_a_digit_coddivipol_but_13(sim: CensusSimulator) -> None:
    """Found answers carry ``coddivipol`` (9 digits, in the key case of the answer) and census
    keeps it; prefix 13 leaves it out."""
    for cedula, key in (("1012345678", "coddivipol"), ("1212345678", "CODDIVIPOL")):
        res = consulta(sim, cedula).json
        data = res["data"]
        assert data[key].isdigit() and len(data[key]) == 9
        place = parse_answer(res, cedula).place
        assert place is not None and place.coddivipol == data[key]
    res = consulta(sim, "1312345678").json
    assert res["encontrado"] is True
    assert set(res["data"]) == FOUND_KEYS - {"coddivipol"}
    place = parse_answer(res, "1312345678").place
    assert place is not None and place.coddivipol == "" and place.departamento


def test_not_found_message_echoes_the_number(sim: CensusSimulator) -> None:
    """Prefix 20: ok, not encontrado, mensaje with the number and the real wording."""
    res = consulta(sim, "2012345678").json
    assert res["ok"] is True and res["encontrado"] is False
    assert "2012345678" in res["mensaje"]
    assert "no se encuentra en el censo para esta elección" in res["mensaje"]
    assert "novedad" not in res


#: The novelty scenarios (prefixes 30-38): the site's words, and what census reads them as.
NOVELTY_SCENARIOS: list[tuple[str, str, Outcome, AnswerReason | None]] = [
    ("3012345678", "Cancelada por Muerte", Outcome.CANCELLED, None),
    ("3112345678", "Cancelada por Doble Cedulación", Outcome.CANCELLED, None),
    (
        "3212345678",
        "Cancelada por Pérdida o Suspensión de los Derechos Políticos",
        Outcome.CANCELLED,
        AnswerReason.RIGHTS_SUSPENDED,
    ),
    (
        "3312345678",
        "Vigente con Pérdida o Suspensión de los Derechos Políticos",
        Outcome.CANCELLED,
        AnswerReason.RIGHTS_SUSPENDED,
    ),
    (
        "3412345678",
        "Baja por Pérdida o Suspensión de los Derechos Políticos",
        Outcome.CANCELLED,
        AnswerReason.RIGHTS_SUSPENDED,
    ),
    (
        "3512345678",
        "no se encuentra habilitado para votar",
        Outcome.NOT_FOUND,
        AnswerReason.NOT_ENABLED,
    ),
    (
        "3612345678",
        "Pendiente por Solicitud en proceso",
        Outcome.NOT_FOUND,
        AnswerReason.PENDING_REQUEST,
    ),
    ("3712345678", "Cancelada por Falsa Identidad", Outcome.CANCELLED, None),
    ("3812345678", "En verificación de identidad", Outcome.UNEXPECTED_PAGE, None),
]


@pytest.mark.parametrize(("cedula", "novedad", "outcome", "reason"), NOVELTY_SCENARIOS)
def test_cancelled_answer_carries_the_novedad(
    sim: CensusSimulator, cedula: str, novedad: str, outcome: Outcome, reason: Any
) -> None:
    """Prefixes 30-38: truthy novedad, mensaje, descripcion and data with resolución and date,
    in the real wordings (and one nobody knows); census reads each as documented."""
    res = consulta(sim, cedula).json
    assert res["ok"] is True and res["encontrado"] is False and res["novedad"]
    assert res["descripcion"] == novedad
    assert novedad in res["mensaje"]
    assert res["data"]["nuip"] == cedula
    assert res["data"]["novedad"] == novedad
    assert res["data"]["resolucion"] and res["data"]["fecha_novedad"]
    result = parse_answer(res, cedula)
    assert (result.outcome, result.reason) == (outcome, reason)


# -- blocks and failures ----------------------------------------------------------------------


def test_blocked_page_is_f5_html_with_status_200(sim: CensusSimulator) -> None:
    """Prefix 40: HTTP 200 text/html with .blocked h3 "The requested URL was rejected..."."""
    res = consulta(sim, "4012345678")
    html = res.body.decode()
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("text/html")
    assert '<div class="blocked"><h3>The requested URL was rejected.' in html
    assert "Please consult with your administrator." in html
    assert "Your support ID is:" in html


def test_blocked_403(sim: CensusSimulator) -> None:
    """Prefix 41: HTTP 403."""
    assert consulta(sim, "4112345678").status == 403


def test_blocked_429_carries_retry_after(sim: CensusSimulator) -> None:
    """Prefix 42: HTTP 429 with Retry-After set to the constructor's retry_after."""
    res = consulta(sim, "4212345678")
    assert res.status == 429
    assert res.headers["Retry-After"] == str(SIM_RETRY_AFTER)


def test_server_error_is_500_with_a_full_html_page(sim: CensusSimulator) -> None:
    """Prefix 62: HTTP 500 with a whole HTML document."""
    res = consulta(sim, "6212345678")
    assert res.status == 500
    assert res.headers["Content-Type"].startswith("text/html")
    assert res.body.lstrip().startswith(b"<!DOCTYPE html>") and b"</html>" in res.body


def test_malformed_is_200_and_neither_json_nor_a_page(sim: CensusSimulator) -> None:
    """Prefix 63: HTTP 200 whose body does not parse as JSON and is not HTML."""
    res = consulta(sim, "6312345678")
    assert res.status == 200
    assert res.json is None
    assert b"<html" not in res.body


def test_reset_drops_the_connection_without_an_answer(sim: CensusSimulator) -> None:
    """Prefix 61: the client gets ECONNRESET and the log records status 0."""
    with pytest.raises(ConnectionResetError) as raised:
        consulta(sim, "6112345678")
    # A real RST, not a clean close (http.client.RemoteDisconnected has no errno).
    assert raised.value.errno == errno.ECONNRESET
    assert sim.consultas()[-1].status == 0
    assert sim.consultas()[-1].scenario == "reset"


def test_slow_answer_arrives_after_slow_seconds(sim: CensusSimulator) -> None:
    """Prefix 60: found, but only after slow_seconds; logged as soon as it arrived."""
    token = token_for(sim, "6012345678")
    started = time.monotonic()
    res = consulta(sim, "6012345678", token)
    assert time.monotonic() - started >= SIM_SLOW_SECONDS
    assert res.json["encontrado"] is True
    assert sim.consultas()[0].monotonic - started < SIM_SLOW_SECONDS


def test_stop_does_not_wait_for_a_slow_answer() -> None:
    """stop() returns promptly while a slow answer is held back; the client sees a drop."""
    simulator = CensusSimulator(slow_seconds=60, captcha="click").start()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            consulta(simulator, "6012345678")
        except OSError as exc:
            errors.append(exc)

    client = threading.Thread(target=ask)
    client.start()
    deadline = time.monotonic() + 5
    while not simulator.consultas() and time.monotonic() < deadline:
        time.sleep(0.02)
    simulator.stop()
    client.join(timeout=30)
    assert not client.is_alive()  # stop() did not wait for the slow answer to finish
    assert errors


# -- poison answers (8x) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cedula", "retry_after"),
    [
        ("8012345678", "inf"),
        ("8112345678", "1e12"),
        ("8212345678", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("8312345678", "-5"),
    ],
)
def test_poison_429_carries_an_absurd_retry_after(
    sim: CensusSimulator, cedula: str, retry_after: str
) -> None:
    """Prefixes 80-83: HTTP 429, the 429 page, and Retry-After inf / 1e12 / year 9999 / -5."""
    res = consulta(sim, cedula)
    assert res.status == 429
    assert res.headers["Retry-After"] == retry_after
    assert res.headers["Content-Type"].startswith("text/html")
    assert b"429 Too Many Requests" in res.body


def test_poison_answers_come_from_the_front_and_leave_the_token_unused(
    sim: CensusSimulator,
) -> None:
    """Prefixes 80-86 answer without the application, so the token still works afterwards."""
    token = token_for(sim, "8012345678")
    assert consulta(sim, "8012345678", token).status == 429
    assert consulta(sim, "1012345678", token).json["encontrado"] is True


def test_huge_body_is_8_mib_of_html_with_status_200(sim: CensusSimulator) -> None:
    """Prefix 84: HTTP 200 text/html, Content-Length and body exactly 8 MiB of plain HTML."""
    res = consulta(sim, "8412345678")
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("text/html")
    assert int(res.headers["Content-Length"]) == HUGE_BODY_BYTES == len(res.body)
    assert res.body.startswith(b"<!DOCTYPE html>") and res.body.endswith(b"</html>\n")
    for marker in (b'class="blocked"', b"no se encuentra", b"captcha", b"Too Many"):
        assert marker not in res.body
    assert sim.consultas()[-1].status == 200
    assert sim.consultas()[-1].scenario == "huge_body"


def test_huge_body_is_streamed_in_small_chunks() -> None:
    """The 8 MiB answer is produced in chunks of at most 64 KiB, never built whole."""
    sizes = [len(chunk) for chunk in _huge_body()]
    assert sum(sizes) == HUGE_BODY_BYTES
    assert max(sizes) <= 64 * 1024


def test_huge_json_is_3_mib_without_content_length(sim: CensusSimulator) -> None:
    """Prefix 89: HTTP 200 JSON of exactly 3 MiB that declares no size (ended by closing)."""
    res = consulta(sim, "8912345678")
    assert res.status == 200
    assert "Content-Length" not in res.headers
    assert len(res.body) == HUGE_JSON_BYTES
    assert res.json["ok"] is True and res.json["encontrado"] is False


def _raw(
    sim: CensusSimulator, method: str, path: str, body: bytes = b""
) -> http.client.HTTPResponse:
    """One request, redirects not followed."""
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
    conn.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
    return conn.getresponse()


def test_redirect_off_site_sends_the_consulta_to_another_origin(sim: CensusSimulator) -> None:
    """Prefix 90: the consulta is answered 307 to the consulta path under the other origin."""
    payload = {"documento": "9012345678", "eleccionId": 0, "captchaToken": "x"}
    res = _raw(sim, "POST", "/back/api/consulta", json.dumps(payload).encode())
    assert res.status == 307
    assert res.getheader("Location") == f"http://localhost:{sim.port}/back/api/consulta"
    assert sim.consultas()[-1].scenario == "redirect_off_site"
    # Addressed as that other origin, the simulator is a plain look-alike: no redirect.
    elsewhere = consulta(f"http://localhost:{sim.port}", "9012345678")
    assert (elsewhere.status, elsewhere.json["encontrado"]) == (200, True)


def test_off_site_and_third_party_layouts_point_at_elsewhere() -> None:
    """The off_site layout redirects the page to the same path on ``elsewhere``; third_party
    loads a script and an image from there."""
    with CensusSimulator(elsewhere="http://127.0.0.1:9/") as simulator:
        simulator.change_layout("off_site")
        res = _raw(simulator, "GET", "/consultar/")
        assert (res.status, res.getheader("Location")) == (302, "http://127.0.0.1:9/consultar/")
        simulator.change_layout("third_party")
        page = fetch(simulator.url).body.decode()
        assert f'src="http://127.0.0.1:9{THIRD_PARTY_SCRIPT}"' in page
        assert f'src="http://127.0.0.1:9{THIRD_PARTY_IMAGE}"' in page


def test_off_site_layout_by_default_redirects_to_itself_as_localhost(sim: CensusSimulator) -> None:
    """Without ``elsewhere``, off_site sends the page to this simulator as localhost, which
    serves the plain form there: a look-alike on another origin, and no redirect loop."""
    sim.change_layout("off_site")
    res = _raw(sim, "GET", "/consultar/")
    assert (res.status, res.getheader("Location")) == (
        302,
        f"http://localhost:{sim.port}/consultar/",
    )
    page = fetch(f"http://localhost:{sim.port}/consultar/")
    assert page.status == 200 and b'id="documento"' in page.body


def test_client_hanging_up_on_the_huge_body_leaves_the_server_serving(
    sim: CensusSimulator,
) -> None:
    """A client that reads a little of the 8 MiB answer and closes does not break the server."""
    body = json.dumps({"documento": "8412345678", "eleccionId": 0, "captchaToken": ""}).encode()
    request = (
        f"POST /back/api/consulta HTTP/1.1\r\nHost: {sim.host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((sim.host, sim.port), timeout=10) as conn:
        conn.sendall(request)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    assert consulta(sim, "1012345678").json["encontrado"] is True


def test_deep_html_nests_the_not_found_message_in_20000_divs(sim: CensusSimulator) -> None:
    """Prefix 85: HTTP 200 text/html, 20,000 nested <div>, the not-found text innermost."""
    res = consulta(sim, "8512345678")
    html = res.body.decode()
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("text/html")
    assert html.count("<div>") == html.count("</div>") == DEEP_HTML_LEVELS
    innermost = html[html.rindex("<div>") + len("<div>") : html.index("</div>")]
    assert "no se encuentra en el censo para esta elección" in innermost
    assert html.index("<div>" * DEEP_HTML_LEVELS) < html.index("no se encuentra")


def test_deep_json_is_100000_nested_arrays(sim: CensusSimulator) -> None:
    """Prefix 86: HTTP 200 application/json, [[[...]]] 100,000 deep; Python's json recurses out."""
    res = consulta(sim, "8612345678")
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("application/json")
    assert res.body == b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS
    with pytest.raises(RecursionError):
        json.loads(res.body)


def test_found_long_fields_has_10000_char_place_and_500_digit_mesa(sim: CensusSimulator) -> None:
    """Prefix 87: found, nom_puesto and direccion 10,000 chars, mesa 500 digits, rest normal."""
    res = consulta(sim, "8712345678").json
    data = res["data"]
    assert res["ok"] is True and res["encontrado"] is True
    assert set(data) == FOUND_KEYS
    assert len(data["nom_puesto"]) == len(data["direccion"]) == answers.LONG_FIELD_CHARS
    assert data["nom_puesto"].startswith("PUESTO ")
    assert data["nom_puesto"] == data["nom_puesto"].strip()
    assert len(data["mesa"]) == answers.LONG_MESA_DIGITS and data["mesa"].isdigit()
    assert data["nuip"] == "8712345678" and len(data["nom_depto"]) < 50


def test_cancelled_long_fields_has_10000_char_novedad_and_resolucion(
    sim: CensusSimulator,
) -> None:
    """Prefix 88: cancelled, novedad (and descripcion) and resolucion of 10,000 chars."""
    res = consulta(sim, "8812345678").json
    assert res["ok"] is True and res["encontrado"] is False and res["novedad"]
    novedad = res["data"]["novedad"]
    assert len(novedad) == len(res["data"]["resolucion"]) == answers.LONG_FIELD_CHARS
    assert novedad.startswith("Cancelada por Muerte")
    assert res["descripcion"] == novedad and novedad in res["mensaje"]


def test_long_field_answers_still_need_a_valid_token(sim: CensusSimulator) -> None:
    """Prefixes 87-88 are application answers: a bad token gets the captcha error."""
    for cedula in ("8712345678", "8812345678"):
        assert consulta(sim, cedula, "").json["ok"] is False


# -- blocking spells --------------------------------------------------------------------------


def test_spell_blocks_every_consulta_with_the_f5_page(sim: CensusSimulator) -> None:
    """block_for: every consulta POST, whatever its cédula or body, gets the F5 page (HTTP 200)."""
    sim.block_for(60)
    assert sim.blocking == "f5"
    answers_ = [
        consulta(sim, "1012345678"),
        consulta(sim, "2012345678"),
        consulta(sim, "6112345678"),
        consulta(sim, "12"),
        fetch(f"{sim.base_url}/back/api/consulta", raw=b"not json"),
    ]
    for res in answers_:
        assert res.status == 200
        assert res.headers["Content-Type"].startswith("text/html")
        assert b'<div class="blocked"><h3>The requested URL was rejected.' in res.body
    assert {r.scenario for r in sim.consultas()} == {"spell_f5"}
    assert [r.status for r in sim.consultas()] == [200] * 5


def test_spell_does_not_block_page_loads_or_the_captcha(sim: CensusSimulator) -> None:
    """During a spell GET /consultar/, the assets and the checkbox still answer normally."""
    sim.block_for(60)
    page = fetch(sim.url)
    assert page.status == 200 and b'id="consultaForm"' in page.body
    assert fetch(f"{sim.base_url}/back/api/elecciones").json["ok"] is True
    assert token_for(sim, "1012345678").startswith("03A")


@pytest.mark.parametrize(
    ("kind", "status", "marker"),
    [("403", 403, b"403"), ("429", 429, b"429 Too Many Requests")],
)
def test_spell_kinds_403_and_429(
    sim: CensusSimulator, kind: str, status: int, marker: bytes
) -> None:
    """block_for(kind="403"/"429"): that status on every consulta; 429 with retry_after."""
    sim.block_for(60, kind)
    res = consulta(sim, "1012345678")
    assert res.status == status and marker in res.body
    if kind == "429":
        assert res.headers["Retry-After"] == str(SIM_RETRY_AFTER)
    assert sim.consultas()[-1].scenario == f"spell_{kind}"
    assert sim.consultas()[-1].status == status


def test_spell_ends_at_its_time_on_the_injected_clock() -> None:
    """With a fake clock, a 20 s spell blocks until 20 s have passed on it, then lifts."""
    clock = FakeClock()
    with CensusSimulator(clock=clock, captcha="click") as simulator:
        simulator.block_for(20, "403")
        clock.advance(19.9)
        assert simulator.blocking == "403"
        assert consulta(simulator, "1012345678").status == 403
        clock.advance(0.1)
        assert simulator.blocking is None
        assert consulta(simulator, "1012345678").json["encontrado"] is True


def test_short_spell_lifts_by_itself_on_the_real_clock(sim: CensusSimulator) -> None:
    """A 0.2 s spell on the default clock ends by itself (polled; no upper bound asserted)."""
    sim.block_for(0.2)
    deadline = time.monotonic() + 30
    while sim.blocking is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.blocking is None
    assert consulta(sim, "1012345678").json["encontrado"] is True


def test_new_spell_replaces_the_current_one() -> None:
    """A second block_for replaces the first: its kind and its end."""
    clock = FakeClock()
    simulator = CensusSimulator(clock=clock, captcha="click")
    simulator.block_for(60, "f5")
    simulator.block_for(5, "429")
    assert simulator.blocking == "429"
    clock.advance(5)
    assert simulator.blocking is None


def test_unblock_and_reset_end_a_spell(sim: CensusSimulator) -> None:
    """unblock() and reset() both end the spell at once."""
    sim.block_for(60)
    sim.unblock()
    assert sim.blocking is None
    assert consulta(sim, "1012345678").json["encontrado"] is True
    sim.block_for(60, "429")
    sim.reset()
    assert sim.blocking is None
    assert consulta(sim, "1012345678").json["encontrado"] is True


@pytest.mark.parametrize(
    ("seconds", "kind"),
    [(10, "500"), (10, "F5"), (-1, "f5"), (float("nan"), "f5"), (float("inf"), "f5"), ("5", "f5")],
)
def test_block_for_refuses_bad_arguments(seconds: Any, kind: str) -> None:
    """block_for wants a finite number of seconds >= 0 and a kind among f5, 403, 429."""
    simulator = CensusSimulator()
    with pytest.raises(ValueError):
        simulator.block_for(seconds, kind)
    assert simulator.blocking is None


def test_spell_counts_the_post_but_leaves_the_token_unused(sim: CensusSimulator) -> None:
    """A spell-blocked consulta counts in consulta_count; its token still works afterwards."""
    token = token_for(sim, "1012345678")
    sim.block_for(60)
    assert b'class="blocked"' in consulta(sim, "1012345678", token).body
    sim.unblock()
    assert consulta(sim, "1012345678", token).json["encontrado"] is True
    assert sim.consulta_count("1012345678") == 2


def test_spell_uses_up_a_flaky_failure(sim: CensusSimulator) -> None:
    """A spell-blocked consulta counts as one of a flaky cédula's K failing consultas."""
    sim.block_for(60)
    assert consulta(sim, "7114567890").status == 200
    sim.unblock()
    assert consulta(sim, "7114567890").json["encontrado"] is True


def test_control_endpoint_blocks_and_unblocks(sim: CensusSimulator) -> None:
    """POST /__simulator__/block and /unblock drive the spell; they are not consultas."""
    res = fetch(sim.base_url + BLOCK_PATH, {"seconds": 60, "kind": "429"})
    assert (res.status, res.json) == (200, {"ok": True, "kind": "429", "seconds": 60})
    assert sim.blocking == "429"
    assert consulta(sim, "1012345678").status == 429
    res = fetch(sim.base_url + UNBLOCK_PATH, {})
    assert (res.status, res.json) == (200, {"ok": True})
    assert consulta(sim, "1012345678").json["encontrado"] is True
    assert [(r.scenario, r.status) for r in sim.consultas()] == [("spell_429", 429), ("found", 200)]
    control = [r for r in sim.access_log if r.scenario == "control"]
    assert [r.path for r in control] == [BLOCK_PATH, UNBLOCK_PATH]
    assert all(r.cedula_masked == "" and r.cedula_key == "" for r in control)


def test_control_endpoint_kind_defaults_to_f5(sim: CensusSimulator) -> None:
    """POST /__simulator__/block with only seconds starts an F5 spell."""
    assert fetch(sim.base_url + BLOCK_PATH, {"seconds": 60}).json["kind"] == "f5"
    assert sim.blocking == "f5"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"seconds": -1}', b'{"seconds": 5, "kind": "500"}'],
)
def test_control_endpoint_refuses_bad_bodies(sim: CensusSimulator, body: bytes) -> None:
    """A body that is not {"seconds": N >= 0, "kind": f5|403|429} is 400 and blocks nothing."""
    res = fetch(sim.base_url + BLOCK_PATH, raw=body)
    assert res.status == 400 and res.json["ok"] is False
    assert sim.blocking is None


def test_control_endpoint_is_for_loopback_clients_only(sim: CensusSimulator) -> None:
    """A control request from a non-loopback address gets 403 and changes nothing."""
    body = json.dumps({"seconds": 60}).encode()
    _, scenario, reply = sim._route("POST", BLOCK_PATH, body, "192.168.1.5")
    assert (scenario, reply.status) == ("control", 403)
    assert sim.blocking is None
    assert _is_loopback_client("127.0.0.1") and _is_loopback_client("::1")
    assert _is_loopback_client("::ffff:127.0.0.1")
    assert not _is_loopback_client("10.0.0.1")


# -- layout changes ---------------------------------------------------------------------------

#: One cédula per application answer: found (lower and UPPER keys), not found, cancelled.
APPLICATION_CEDULAS = ["1012345678", "1212345678", "2012345678", "3012345678", "8812345678"]


def test_layout_is_normal_until_changed(sim: CensusSimulator) -> None:
    """layout is None by default, names the kind change_layout set, and None again after it."""
    assert sim.layout is None
    for kind in LAYOUT_KINDS:
        sim.change_layout(kind)
        assert sim.layout == kind
    sim.change_layout(None)
    assert sim.layout is None
    assert set(LAYOUT_KINDS) == {
        "renamed_field",
        "wrapper",
        "form_renamed",
        "off_site",
        "third_party",
    }


def test_renamed_field_says_hallado_instead_of_encontrado(sim: CensusSimulator) -> None:
    """renamed_field: found, not-found and cancelled answers carry hallado (same value, same
    place) and no encontrado; change_layout(None) brings encontrado back."""
    normal = {cedula: consulta(sim, cedula) for cedula in APPLICATION_CEDULAS}
    sim.change_layout("renamed_field")
    for cedula, before in normal.items():
        res = consulta(sim, cedula)
        assert res.status == 200
        assert "encontrado" not in res.json
        expected = {("hallado" if k == "encontrado" else k): v for k, v in before.json.items()}
        assert list(res.json.items()) == list(expected.items())
        assert res.json["hallado"] is before.json["encontrado"]
    sim.change_layout(None)
    for cedula, before in normal.items():
        assert consulta(sim, cedula).json == before.json


def test_renamed_field_leaves_errors_and_front_answers_alone(sim: CensusSimulator) -> None:
    """renamed_field changes only answers that had encontrado: errors, blocks and the
    malformed body are as in the normal layout."""
    sim.change_layout("renamed_field")
    assert consulta(sim, "1012345678", "").json == {
        "ok": False,
        "error": "Token de captcha inválido o expirado",
    }
    assert consulta(sim, "4112345678").status == 403
    assert consulta(sim, "6312345678").body == b'{"ok": true, "encontrado": tr'


def test_wrapper_wraps_every_application_answer(sim: CensusSimulator) -> None:
    """wrapper: answers, the token error, the documento error and the 400 for a non-JSON body
    come as {"respuesta": <the normal answer>}; change_layout(None) unwraps them again."""

    def application_answers() -> list[Response]:
        return [
            *(consulta(sim, cedula) for cedula in APPLICATION_CEDULAS),
            consulta(sim, "1012345678", ""),
            consulta(sim, "5112345678"),
            consulta(sim, "12"),
            fetch(f"{sim.base_url}/back/api/consulta", raw=b"not json"),
        ]

    normal = application_answers()
    assert normal[len(APPLICATION_CEDULAS)].json["ok"] is False
    assert normal[-1].status == 400
    sim.change_layout("wrapper")
    wrapped = application_answers()
    for before, res in zip(normal, wrapped, strict=True):
        assert res.status == before.status
        assert res.json == {"respuesta": before.json}
    sim.change_layout(None)
    assert [r.json for r in application_answers()] == [r.json for r in normal]


def test_wrapper_leaves_the_front_and_the_other_endpoints_alone(sim: CensusSimulator) -> None:
    """wrapper: blocks and the malformed body (the front layer), elecciones, the checkbox and
    the control endpoints answer as in the normal layout."""
    sim.change_layout("wrapper")
    assert b'class="blocked"' in consulta(sim, "4012345678").body
    assert consulta(sim, "6312345678").body == b'{"ok": true, "encontrado": tr'
    assert fetch(f"{sim.base_url}/back/api/elecciones").json["ok"] is True
    assert token_for(sim, "1012345678").startswith("03A")
    assert fetch(sim.base_url + UNBLOCK_PATH, {}).json == {"ok": True}


def test_form_renamed_serves_numero_documento(sim: CensusSimulator) -> None:
    """form_renamed: the form page's input (id, name, label) is numeroDocumento, not documento;
    the consulta API is unchanged; change_layout(None) serves #documento again."""
    found = consulta(sim, "1012345678").json
    sim.change_layout("form_renamed")
    for path in ("/consultar/", "/"):
        html = fetch(sim.base_url + path).body.decode()
        assert '<input id="numeroDocumento" name="numeroDocumento"' in html
        assert '<label for="numeroDocumento">' in html
        assert '"documento"' not in html
        assert 'id="consultaForm"' in html and 'id="submitBtn"' in html
    assert consulta(sim, "1012345678").json == found
    sim.change_layout(None)
    html = fetch(sim.url).body.decode()
    assert '<input id="documento" name="documento"' in html and "numeroDocumento" not in html


def test_page_scripts_follow_the_layouts(sim: CensusSimulator) -> None:
    """The page script reads hallado, unwraps respuesta and finds #numeroDocumento; the
    checkbox frame reads the parent's #numeroDocumento too (Chromium test below)."""
    script = fetch(f"{sim.base_url}/static/consulta.js").body.decode()
    for marker in ("r.hallado", "r.respuesta", '"numeroDocumento"'):
        assert marker in script
    anchor = fetch(f"{sim.base_url}/recaptcha/api2/anchor").body.decode()
    assert 'padre("numeroDocumento")' in anchor


@pytest.mark.parametrize("kind", LAYOUT_KINDS)
def test_reset_restores_the_normal_layout(sim: CensusSimulator, kind: str) -> None:
    """reset() ends any layout change: the answer and the page are the normal ones again."""
    sim.change_layout(kind)
    sim.reset()
    assert sim.layout is None
    assert consulta(sim, "1012345678").json["encontrado"] is True
    assert '<input id="documento"' in fetch(sim.url).body.decode()


@pytest.mark.parametrize("kind", ["bogus", "WRAPPER", "", "f5", 1, ["wrapper"]])
def test_change_layout_refuses_unknown_kinds(kind: Any) -> None:
    """change_layout wants None or one of LAYOUT_KINDS; the error lists them; nothing changes."""
    simulator = CensusSimulator()
    simulator.change_layout("wrapper")
    with pytest.raises(ValueError, match="renamed_field, wrapper, form_renamed"):
        simulator.change_layout(kind)
    assert simulator.layout == "wrapper"


def test_control_endpoint_changes_and_restores_the_layout(sim: CensusSimulator) -> None:
    """POST /__simulator__/layout {"kind": K} changes the layout, {"kind": null} restores it;
    both are recorded as control, not as consultas."""
    res = fetch(sim.base_url + LAYOUT_PATH, {"kind": "wrapper"})
    assert (res.status, res.json) == (200, {"ok": True, "kind": "wrapper"})
    assert sim.layout == "wrapper"
    assert consulta(sim, "1012345678").json["respuesta"]["encontrado"] is True
    res = fetch(sim.base_url + LAYOUT_PATH, {"kind": None})
    assert (res.status, res.json) == (200, {"ok": True, "kind": None})
    assert sim.layout is None
    assert consulta(sim, "1012345678").json["encontrado"] is True
    assert [r.scenario for r in sim.consultas()] == ["found", "found"]
    control = [r for r in sim.access_log if r.scenario == "control"]
    assert [(r.path, r.status) for r in control] == [(LAYOUT_PATH, 200), (LAYOUT_PATH, 200)]
    assert all(r.cedula_masked == "" and r.cedula_key == "" for r in control)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"layout": "wrapper"}', b'{"kind": "bogus"}', b'{"kind": 1}'],
)
def test_control_endpoint_refuses_bad_layout_bodies(sim: CensusSimulator, body: bytes) -> None:
    """A body that is not {"kind": null | a layout kind} is 400 and leaves the layout as it is."""
    sim.change_layout("renamed_field")
    res = fetch(sim.base_url + LAYOUT_PATH, raw=body)
    assert res.status == 400
    assert res.json["ok"] is False and "renamed_field, wrapper, form_renamed" in res.json["error"]
    assert sim.layout == "renamed_field"
    assert sim.access_log[-1].scenario == "control"


def test_layout_control_is_for_loopback_clients_only(sim: CensusSimulator) -> None:
    """A layout control request from a non-loopback address gets 403 and changes nothing."""
    body = json.dumps({"kind": "wrapper"}).encode()
    _, scenario, reply = sim._route("POST", LAYOUT_PATH, body, "192.168.1.5")
    assert (scenario, reply.status) == ("control", 403)
    assert sim.layout is None


def test_records_carry_the_layout_in_force(tmp_path: Path) -> None:
    """Every record (page, checkbox, consulta, blocked consulta, control) carries the layout
    it was answered under, "" for the normal one; the JSON lines too."""
    path = tmp_path / "access.jsonl"
    with CensusSimulator(access_log_path=path) as simulator:
        fetch(simulator.url)
        consulta(simulator, "1012345678")
        fetch(simulator.base_url + LAYOUT_PATH, {"kind": "form_renamed"})
        fetch(simulator.url)
        consulta(simulator, "1012345678")
        simulator.block_for(60)
        consulta(simulator, "1012345678")
        simulator.unblock()
        simulator.change_layout("renamed_field")
        consulta(simulator, "2012345678")
        fetch(simulator.base_url + LAYOUT_PATH, {"kind": None})
        consulta(simulator, "1012345678")
        records = simulator.access_log
    got = [(r.path, r.scenario, r.layout) for r in records]
    assert got == [
        ("/consultar/", "", ""),
        ("/recaptcha/api2/userverify", "found", ""),
        ("/back/api/consulta", "found", ""),
        (LAYOUT_PATH, "control", "form_renamed"),
        ("/consultar/", "", "form_renamed"),
        ("/recaptcha/api2/userverify", "found", "form_renamed"),
        ("/back/api/consulta", "found", "form_renamed"),
        ("/recaptcha/api2/userverify", "found", "form_renamed"),
        ("/back/api/consulta", "spell_f5", "form_renamed"),
        ("/recaptcha/api2/userverify", "not_found", "renamed_field"),
        ("/back/api/consulta", "not_found", "renamed_field"),
        (LAYOUT_PATH, "control", ""),
        ("/recaptcha/api2/userverify", "found", ""),
        ("/back/api/consulta", "found", ""),
    ]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["layout"] for line in lines] == [r.layout for r in records]


def test_access_record_layout_defaults_to_empty() -> None:
    """AccessRecord built without layout (as existing callers do) has layout ""."""
    record = AccessRecord(
        time=0.0, monotonic=0.0, method="GET", path="/", cedula_masked="", scenario="", status=200
    )
    assert record.layout == ""


# -- captcha ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "03Anot-a-token-this-simulator-issued"])
def test_consulta_rejects_tokens_it_did_not_issue(sim: CensusSimulator, token: str) -> None:
    """An empty or unknown captchaToken gets ok false with an error mentioning the captcha."""
    res = consulta(sim, "1012345678", token)
    assert res.json["ok"] is False
    assert "captcha" in res.json["error"].lower()


def test_token_is_single_use(sim: CensusSimulator) -> None:
    """A token works for one consulta; sending it again is rejected."""
    token = token_for(sim, "1012345678")
    assert consulta(sim, "1012345678", token).json["ok"] is True
    assert consulta(sim, "1012345678", token).json["ok"] is False


def test_token_expires_after_token_ttl() -> None:
    """A token is accepted until token_ttl has passed on the simulator's clock, then rejected."""
    clock = FakeClock()
    with CensusSimulator(clock=clock, captcha="click") as simulator:
        fresh, stale = token_for(simulator, "1012345678"), token_for(simulator, "1012345678")
        clock.advance(simulator.token_ttl - 0.1)
        assert consulta(simulator, "1012345678", fresh).json["encontrado"] is True
        clock.advance(0.1)
        res = consulta(simulator, "1012345678", stale)
        assert res.json == {"ok": False, "error": "Token de captcha inválido o expirado"}


def test_checkbox_token_is_long_and_shaped_like_recaptcha(sim: CensusSimulator) -> None:
    """The userverify answer carries a long 03A... token and its lifetime."""
    res = fetch(f"{sim.base_url}/recaptcha/api2/userverify", {"k": SITE_KEY, "documento": ""})
    assert res.json["token"].startswith("03A") and len(res.json["token"]) > 400
    assert res.json["expires_in"] == sim.token_ttl


def test_captcha_challenge_never_issues_a_token(sim: CensusSimulator) -> None:
    """Prefix 50: the checkbox gets an image challenge instead of a token."""
    res = fetch(
        f"{sim.base_url}/recaptcha/api2/userverify", {"k": SITE_KEY, "documento": "5012345678"}
    )
    assert res.json == {"ok": True, "challenge": True}
    assert "captcha" in consulta(sim, "5012345678", "").json["error"].lower()


def test_token_rejected_scenario_rejects_a_valid_token(sim: CensusSimulator) -> None:
    """Prefix 51: even a fresh token gets "Token de captcha inválido o expirado"."""
    res = consulta(sim, "5112345678")
    assert res.json == {"ok": False, "error": "Token de captcha inválido o expirado"}


def test_solver_helper_gets_a_token_past_the_challenge(sim: CensusSimulator) -> None:
    """solve_captcha returns a token the consulta accepts, even for a challenge cédula."""
    token = solve_captcha(SITE_KEY, sim.url)
    assert token
    assert consulta(sim, "5012345678", token).json["encontrado"] is True
    assert solve_captcha("6Lwrong-site-key", sim.url) is None


def test_invalid_documento_and_bad_json_are_errors(sim: CensusSimulator) -> None:
    """A documento that is not 3-10 digits is ok false; a body that is not JSON is 400."""
    assert consulta(sim, "12").json["ok"] is False
    assert fetch(f"{sim.base_url}/back/api/consulta", raw=b"not json").status == 400


# -- flaky ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("0", lambda r: r.status == 200 and b'class="blocked"' in r.body),
        ("1", lambda r: r.status == 500),
        ("2", lambda r: r == "reset"),
        ("3", lambda r: r.json == {"ok": False, "error": "Token de captcha inválido o expirado"}),
        ("4", lambda r: r.json["encontrado"] is True and r.elapsed >= SIM_SLOW_SECONDS),
        ("5", lambda r: r.status == 429 and r.headers["Retry-After"] == str(SIM_RETRY_AFTER)),
    ],
)
def test_flaky_fails_k_times_then_is_found(sim: CensusSimulator, mode: str, check: Any) -> None:
    """7KM: the first K consultas fail in mode M, the next ones are found quickly."""
    cedula = f"72{mode}4567890"
    failed: list[Any] = []
    for _ in range(2):
        try:
            res: Any = consulta(sim, cedula)
        except ConnectionResetError:
            res = "reset"
        assert check(res)
        failed.append(res)
    res = consulta(sim, cedula)
    assert res.json["encontrado"] is True
    if mode == "4":  # side by side: the found answer is not held back like the slow ones
        assert res.elapsed < min(r.elapsed for r in failed)
    assert sim.consulta_count(cedula) == 3


def test_reset_restarts_flaky_counters_and_clears_the_log(sim: CensusSimulator) -> None:
    """reset() makes a flaky cédula fail again from the start and empties the access log."""
    assert consulta(sim, "7114567890").status == 500
    assert consulta(sim, "7114567890").status == 200
    sim.reset()
    assert sim.access_log == [] and sim.consulta_count("7114567890") == 0
    assert consulta(sim, "7114567890").status == 500


# -- binding and connections ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_refuses_non_loopback_hosts(host: str) -> None:
    """Only loopback addresses are accepted; anything else raises a clear ValueError."""
    with pytest.raises(ValueError, match="loopback only"):
        CensusSimulator(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_serves_on_loopback_hosts(host: str) -> None:
    """Loopback hosts bind and serve; url and base_url name the bound port."""
    with CensusSimulator(host=host) as simulator:
        assert simulator.port > 0
        assert simulator.url == f"http://{host}:{simulator.port}/consultar/"
        assert fetch(simulator.url).status == 200


def test_answers_close_the_connection(sim: CensusSimulator) -> None:
    """Every answer says Connection: close, so a browser never re-sends a POST on a reused one."""
    assert fetch(sim.url).headers["Connection"] == "close"
    assert consulta(sim, "1012345678").headers["Connection"] == "close"


def test_url_needs_a_running_simulator() -> None:
    """url raises before start() rather than naming a port nobody listens on."""
    with pytest.raises(RuntimeError):
        _ = CensusSimulator().url


# -- access log -------------------------------------------------------------------------------


def test_access_log_records_every_request(sim: CensusSimulator) -> None:
    """Each request leaves a record: times, method, path without query, mask, scenario, status."""
    before = time.time()
    fetch(f"{sim.url}?documento=1012345678")
    consulta(sim, "4112345678")
    log = sim.access_log
    assert [(r.method, r.path, r.status) for r in log] == [
        ("GET", "/consultar/", 200),
        ("POST", "/recaptcha/api2/userverify", 200),
        ("POST", "/back/api/consulta", 403),
    ]
    assert log[0].cedula_masked == "" and log[0].scenario == ""
    assert log[2].cedula_masked == "*******678" and log[2].scenario == "blocked_403"
    assert all(before <= r.time <= time.time() for r in log)
    assert [r.monotonic for r in log] == sorted(r.monotonic for r in log)
    assert sim.consultas() == [log[2]]
    assert isinstance(log[2], AccessRecord)


def test_consultas_carry_arrival_on_the_clients_monotonic_clock(sim: CensusSimulator) -> None:
    """Each consulta's monotonic arrival lies between the client's send and receipt times."""
    brackets = []
    for cedula in ("1012345678", "1012345679"):
        token = token_for(sim, cedula)
        sent = time.monotonic()
        consulta(sim, cedula, token)
        brackets.append((sent, time.monotonic()))
    records = sim.consultas()
    assert len(records) == 2
    for record, (sent, received) in zip(records, brackets, strict=True):
        assert sent <= record.monotonic <= received


def test_no_full_cedula_in_log_file_or_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Records, the JSON-lines file and stdout/stderr hold masked cédulas only."""
    path = tmp_path / "access.jsonl"
    printed: list[AccessRecord] = []
    cedulas = ["1012345678", "2012345678", "3012345678", "4012345678", "5012345678", "6112345678"]
    with CensusSimulator(access_log_path=path, on_access=printed.append) as simulator:
        for cedula in cedulas:
            with contextlib.suppress(ConnectionResetError):
                consulta(simulator, cedula)
        fetch(f"{simulator.url}?documento=1012345678")
        records = simulator.access_log
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(records) == len(printed)
    assert lines[1] == {
        "time": records[1].time,
        "monotonic": records[1].monotonic,
        "method": "POST",
        "path": "/back/api/consulta",
        "cedula_masked": mask(cedulas[0]),
        "cedula_key": cedula_key(cedulas[0]),
        "scenario": "found",
        "status": 200,
        "layout": "",
    }
    out, err = capfd.readouterr()
    everything = repr(records) + path.read_text() + out + err
    for cedula in cedulas:
        assert cedula not in everything


def test_cedula_key_is_a_short_sha256_of_the_digits() -> None:
    """cedula_key: first 12 hex of sha256("census-simulator-key:" + digits); separators ignored."""
    expected = hashlib.sha256(b"census-simulator-key:1012345678").hexdigest()[:12]
    assert cedula_key("1012345678") == expected
    assert cedula_key("1.012.345.678") == cedula_key("1012 345-678") == expected
    assert cedula_key("1012345679") != expected
    with pytest.raises(ValueError):
        cedula_key("12")


def test_records_carry_the_cedula_key(sim: CensusSimulator) -> None:
    """Checkbox and consulta records carry cedula_key; pages, bad documentos and controls ""."""
    consulta(sim, "1012345678")
    consulta(sim, "12")
    fetch(sim.url)
    fetch(sim.base_url + UNBLOCK_PATH, {})
    keys = [(r.path, r.cedula_key) for r in sim.access_log]
    key = cedula_key("1012345678")
    assert keys == [
        ("/recaptcha/api2/userverify", key),
        ("/back/api/consulta", key),
        ("/recaptcha/api2/userverify", ""),
        ("/back/api/consulta", ""),
        ("/consultar/", ""),
        (UNBLOCK_PATH, ""),
    ]


def test_access_log_file_counts_requests_per_key_while_serving(tmp_path: Path) -> None:
    """Each request is a flushed JSON line at once; keys count consultas per member."""
    path = tmp_path / "access.jsonl"
    with CensusSimulator(access_log_path=path) as simulator:
        consulta(simulator, "1012345678")
        lines = path.read_text().splitlines()
        assert len(lines) == 2 and lines[-1].startswith("{")
        simulator.block_for(60)
        consulta(simulator, "1012345678")
        consulta(simulator, "2012345678")
        fetch(simulator.base_url + UNBLOCK_PATH, {})
        lines = [json.loads(line) for line in path.read_text().splitlines()]
    consultas = [line for line in lines if line["path"] == "/back/api/consulta"]
    counts = Counter(line["cedula_key"] for line in consultas)
    assert counts == {cedula_key("1012345678"): 2, cedula_key("2012345678"): 1}
    blocked = consultas[1]
    assert (blocked["scenario"], blocked["status"]) == ("spell_f5", 200)
    assert blocked["cedula_masked"] == "*******678"
    assert lines[-1]["path"] == UNBLOCK_PATH and lines[-1]["scenario"] == "control"
    assert set(lines[0]) == {
        "time",
        "monotonic",
        "method",
        "path",
        "cedula_masked",
        "cedula_key",
        "scenario",
        "status",
        "layout",
    }
    assert "1012345678" not in path.read_text()


# -- pytest plugin and management command -----------------------------------------------------


def test_census_site_fixture_is_the_session_simulator_after_reset(
    request: pytest.FixtureRequest,
) -> None:
    """census_site hands back the running session simulator with its log cleared."""
    session_sim = request.getfixturevalue("census_simulator")
    fetch(session_sim.url)
    assert session_sim.access_log
    site = request.getfixturevalue("census_site")
    assert site is session_sim
    assert site.access_log == []
    assert site.slow_seconds == 120.0 and site.retry_after == 10


def _start_command(*args: str, banner: int = 2) -> tuple[subprocess.Popen[str], str, str]:
    """Run ``manage.py census_simulator --port 0 ARGS``; (process, base URL, banner) once it
    serves. The ``banner`` first lines are read here, before any request, so that no output is
    left in the pipe's read buffer where ``communicate(timeout=...)`` would not see it."""
    proc = django_command("census_simulator", "--port", "0", *args)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("Census simulator serving http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(first + proc.communicate(timeout=15)[0])
    lines = [first] + [proc.stdout.readline() for _ in range(banner - 1)]
    return proc, first.split()[-1].removesuffix("/consultar/"), "".join(lines)


def test_management_command_serves_until_sigterm(tmp_path: Path) -> None:
    """manage.py census_simulator prints the URL, serves, logs masked and exits 0 on SIGTERM."""
    log = tmp_path / "access.jsonl"
    proc, base, banner = _start_command("--retry-after", "3", "--access-log", str(log))
    try:
        assert banner.splitlines()[1] == "Set CENSUS_SITE_URL to that URL. Ctrl-C stops it."
        res = fetch(f"{base}/back/api/consulta", {"documento": "4212345678"})
        assert res.status == 429 and res.headers["Retry-After"] == "3"
    finally:
        out = stop_command(proc)
    assert proc.returncode == 0
    assert "POST /back/api/consulta *******678 blocked_429 -> 429" in out
    assert "Census simulator stopped." in out
    assert "4212345678" not in out + log.read_text()
    assert json.loads(log.read_text().splitlines()[0])["status"] == 429


def test_management_command_block_first_and_control_endpoint(tmp_path: Path) -> None:
    """--block-first/--block-kind block consultas from the start; POST /unblock lifts it."""
    log = tmp_path / "access.jsonl"
    proc, base, banner = _start_command(
        "--captcha",
        "click",
        "--block-first",
        "600",
        "--block-kind",
        "403",
        "--access-log",
        str(log),
        banner=3,
    )
    try:
        assert fetch(f"{base}/consultar/").status == 200
        sent = time.monotonic()
        assert consulta(base, "1012345678").status == 403
        received = time.monotonic()
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        blocked = lines[-1]
        assert blocked["path"] == "/back/api/consulta"
        assert (blocked["scenario"], blocked["status"]) == ("spell_403", 403)
        assert blocked["cedula_key"] == cedula_key("1012345678")
        # time.monotonic() is system-wide: the server's stamps compare with the test's.
        assert sent <= blocked["monotonic"] <= received
        assert fetch(base + UNBLOCK_PATH, {}).json == {"ok": True}
        assert consulta(base, "1012345678").json["encontrado"] is True
        assert fetch(base + BLOCK_PATH, {"seconds": 600, "kind": "429"}).status == 200
        assert consulta(base, "1012345678").status == 429
    finally:
        out = stop_command(proc)
    assert proc.returncode == 0
    assert banner.splitlines()[-1] == "Blocking every consulta (403) for the first 600 s."
    assert "POST /back/api/consulta *******678 spell_403 -> 403" in out
    assert f"POST {UNBLOCK_PATH} control -> 200" in out
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    consultas = [line for line in lines if line["path"] == "/back/api/consulta"]
    assert [(c["scenario"], c["status"]) for c in consultas] == [
        ("spell_403", 403),
        ("found", 200),
        ("spell_429", 429),
    ]
    assert "1012345678" not in out + log.read_text()


def test_management_command_refuses_a_negative_block_first() -> None:
    """--block-first -1 is an error, not a server."""
    done = subprocess.run(
        [sys.executable, "-m", "django", "census_simulator", "--port", "0", "--block-first=-1"],
        cwd=ROOT,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "spell seconds must be a finite number" in done.stderr


def test_management_command_layout_starts_with_a_changed_layout(tmp_path: Path) -> None:
    """--layout wrapper serves wrapped answers from the start, says so in the banner and in
    each printed line; POST /__simulator__/layout {"kind": null} restores the layout."""
    log = tmp_path / "access.jsonl"
    proc, base, banner = _start_command(
        "--captcha", "click", "--layout", "wrapper", "--access-log", str(log), banner=3
    )
    try:
        assert consulta(base, "1012345678").json["respuesta"]["encontrado"] is True
        assert fetch(base + LAYOUT_PATH, {"kind": None}).json == {"ok": True, "kind": None}
        assert consulta(base, "1012345678").json["encontrado"] is True
    finally:
        out = stop_command(proc)
    assert proc.returncode == 0
    assert banner.splitlines()[-1] == 'Serving the changed layout "wrapper".'
    assert "POST /back/api/consulta *******678 found -> 200 [layout wrapper]" in out
    assert f"POST {LAYOUT_PATH} control -> 200\n" in out
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    consultas = [line for line in lines if line["path"] == "/back/api/consulta"]
    assert [c["layout"] for c in consultas] == ["wrapper", ""]


def test_management_command_refuses_an_unknown_layout() -> None:
    """--layout with a kind not in LAYOUT_KINDS is an error naming the kinds, not a server."""
    done = subprocess.run(
        [sys.executable, "-m", "django", "census_simulator", "--port", "0", "--layout", "bogus"],
        cwd=ROOT,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--layout" in done.stderr and "renamed_field" in done.stderr
    assert "Census simulator serving" not in done.stdout


# -- the real page in Chromium ----------------------------------------------------------------


# -- the live site's captcha (captcha="challenge", the default) ------------------------------


def test_the_default_captcha_challenges_every_click_and_refuses_unknown_tokens() -> None:
    """As the live site treats an automated browser: an image challenge on every click (a
    "found" cédula too), and a consulta with a token nobody issued is refused and counted."""
    with CensusSimulator() as simulator:
        click = fetch(
            f"{simulator.base_url}/recaptcha/api2/userverify",
            {"k": SITE_KEY, "documento": "1012345678"},
        )
        assert click.json == {"ok": True, "challenge": True}
        refused = consulta(simulator, "1012345678", token="03Aforged")
        assert refused.json["ok"] is False
        assert simulator.token_rejections() == {"unknown": 1}


def test_a_token_the_verifier_accepts_gets_the_answer_and_its_refusals_are_counted() -> None:
    """The solving service's check decides on tokens the simulator did not issue (single use
    there), and each refusal is counted by the verifier's reason."""
    issued = {"03Agood"}

    def verify(token: str) -> tuple[bool, str]:
        if token in issued:
            issued.discard(token)
            return True, ""
        return False, "timeout-or-duplicate"

    with CensusSimulator(token_verifier=verify) as simulator:
        assert consulta(simulator, "1012345678", token="03Agood").json["encontrado"] is True
        assert consulta(simulator, "1012345678", token="03Agood").json["ok"] is False
        assert consulta(simulator, "1012345678", token="").json["ok"] is False
        assert simulator.token_rejections() == {"timeout-or-duplicate": 1, "missing": 1}


def test_the_captcha_mode_must_be_known() -> None:
    """A misspelled captcha mode is refused at construction, not served as some default."""
    with pytest.raises(ValueError, match="captcha must be one of"):
        CensusSimulator(captcha="easy")
