"""The census site simulator, over real HTTP with urllib (the Chromium tests live elsewhere)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from census.cedula import mask
from census.testing.simulator import (
    SITE_KEY,
    AccessRecord,
    CensusSimulator,
    scenario_for,
    solve_captcha,
)

ROOT = Path(__file__).resolve().parent.parent
SLOW_SECONDS = 1.0
RETRY_AFTER = 7
FOUND_KEYS = {
    "nuip",
    "nom_depto",
    "nom_mun",
    "nom_puesto",
    "direccion",
    "mesa",
    "fingreso",
    "coddivipol",
}


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
    except ValueError:
        parsed = None
    return Response(status, headers, body, parsed, time.monotonic() - started)


def token_for(sim: CensusSimulator, cedula: str = "") -> str:
    """Click the checkbox as the widget does: POST userverify with the typed cédula."""
    res = fetch(f"{sim.base_url}/recaptcha/api2/userverify", {"k": SITE_KEY, "documento": cedula})
    return res.json.get("token", "")


def consulta(sim: CensusSimulator, cedula: str, token: str | None = None) -> Response:
    """Submit the form: a fresh token unless one is given, then POST the consulta."""
    if token is None:
        token = token_for(sim, cedula)
    payload = {"documento": cedula, "eleccionId": 0, "captchaToken": token}
    return fetch(f"{sim.base_url}/back/api/consulta", payload)


@pytest.fixture(scope="module")
def module_sim() -> Iterator[CensusSimulator]:
    with CensusSimulator(slow_seconds=SLOW_SECONDS, retry_after=RETRY_AFTER) as simulator:
        yield simulator


@pytest.fixture
def sim(module_sim: CensusSimulator) -> CensusSimulator:
    module_sim.reset()
    return module_sim


# -- scenario table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cedula", "name"),
    [
        ("1012345678", "found"),
        ("1112345678", "found_locality"),
        ("1212345678", "found_upper"),
        ("2012345678", "not_found"),
        ("3012345678", "cancelled_death"),
        ("3112345678", "cancelled_double"),
        ("3212345678", "cancelled_rights"),
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


def test_not_found_message_echoes_the_number(sim: CensusSimulator) -> None:
    """Prefix 20: ok, not encontrado, mensaje with the number and the real wording."""
    res = consulta(sim, "2012345678").json
    assert res["ok"] is True and res["encontrado"] is False
    assert "2012345678" in res["mensaje"]
    assert "no se encuentra en el censo para esta elección" in res["mensaje"]
    assert "novedad" not in res


@pytest.mark.parametrize(
    ("cedula", "novedad"),
    [
        ("3012345678", "Cancelada por Muerte"),
        ("3112345678", "Cancelada por Doble Cedulación"),
        ("3212345678", "Cancelada por Pérdida o Suspensión de los Derechos Políticos"),
    ],
)
def test_cancelled_answer_carries_the_novedad(
    sim: CensusSimulator, cedula: str, novedad: str
) -> None:
    """Prefixes 30-32: truthy novedad, mensaje, descripcion and data with resolución and date."""
    res = consulta(sim, cedula).json
    assert res["ok"] is True and res["encontrado"] is False and res["novedad"]
    assert res["descripcion"] == novedad
    assert novedad in res["mensaje"]
    assert res["data"]["nuip"] == cedula
    assert res["data"]["novedad"] == novedad
    assert res["data"]["resolucion"] and res["data"]["fecha_novedad"]


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
    assert res.headers["Retry-After"] == str(RETRY_AFTER)


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
    assert time.monotonic() - started >= SLOW_SECONDS
    assert res.json["encontrado"] is True
    assert sim.consultas()[0].monotonic - started < SLOW_SECONDS


def test_stop_does_not_wait_for_a_slow_answer() -> None:
    """stop() returns promptly while a slow answer is held back; the client sees a drop."""
    simulator = CensusSimulator(slow_seconds=60).start()
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
    started = time.monotonic()
    simulator.stop()
    client.join(timeout=5)
    assert time.monotonic() - started < 3
    assert not client.is_alive()
    assert errors


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
    """A token older than token_ttl is rejected as expired."""
    with CensusSimulator(token_ttl=0.2) as simulator:
        token = token_for(simulator, "1012345678")
        assert token
        time.sleep(0.3)
        res = consulta(simulator, "1012345678", token)
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
        ("4", lambda r: r.json["encontrado"] is True and r.elapsed >= SLOW_SECONDS),
        ("5", lambda r: r.status == 429 and r.headers["Retry-After"] == str(RETRY_AFTER)),
    ],
)
def test_flaky_fails_k_times_then_is_found(sim: CensusSimulator, mode: str, check: Any) -> None:
    """7KM: the first K consultas fail in mode M, the next ones are found quickly."""
    cedula = f"72{mode}4567890"
    for _ in range(2):
        try:
            res: Any = consulta(sim, cedula)
        except ConnectionResetError:
            res = "reset"
        assert check(res)
    res = consulta(sim, cedula)
    assert res.json["encontrado"] is True
    assert res.elapsed < SLOW_SECONDS
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


def test_consultas_show_the_spacing_between_queries(sim: CensusSimulator) -> None:
    """Monotonic arrival times of consultas are as far apart as the client spaced them."""
    consulta(sim, "1012345678")
    time.sleep(0.3)
    consulta(sim, "1012345679")
    first, second = sim.consultas()
    assert second.monotonic - first.monotonic >= 0.3


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
        "scenario": "found",
        "status": 200,
    }
    out, err = capfd.readouterr()
    everything = repr(records) + path.read_text() + out + err
    for cedula in cedulas:
        assert cedula not in everything


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


def test_management_command_serves_until_sigterm(tmp_path: Path) -> None:
    """manage.py census_simulator prints the URL, serves, logs masked and exits 0 on SIGTERM."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example")]),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "access.jsonl"
    cmd = [sys.executable, "-m", "django", "census_simulator", "--port", "0", "--retry-after"]
    proc = subprocess.Popen(
        [*cmd, "3", "--access-log", str(log)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Census simulator serving http://127.0.0.1:")
        url = first.split()[-1]
        base = url.removesuffix("/consultar/")
        res = fetch(f"{base}/back/api/consulta", {"documento": "4212345678"})
        assert res.status == 429 and res.headers["Retry-After"] == "3"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "POST /back/api/consulta *******678 blocked_429 -> 429" in out
    assert "Census simulator stopped." in out
    assert "4212345678" not in out + log.read_text()
    assert json.loads(log.read_text().splitlines()[0])["status"] == 429
