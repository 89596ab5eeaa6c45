"""A local HTTP simulator of the Registraduría's "Consulta tu lugar de votación" site.

Same page structure, element ids, JSON endpoints and answer shapes as the real site (see
docs/simulator.md); the cédula's leading digits pick a scenario (found, blocked, reset, ...).
A blocking spell (``block_for``, or ``POST /__simulator__/block``) makes every consulta get a
block answer for a while; a layout change (``change_layout``, or ``POST /__simulator__/layout``)
makes the site change its answer or page layout until restored. Standard library only, so that
the pytest plugin stays light.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from census.cedula import mask, normalize
from census.testing import answers
from census.testing.scenarios import (
    POISON_RETRY_AFTER,
    SPELL_KINDS,
    Scenario,
    flaky_plan,
    scenario_for,
    spell_scenario_name,
)

__all__ = [
    "BLOCK_PATH",
    "CONSULTA_PATH",
    "LAYOUT_KINDS",
    "LAYOUT_PATH",
    "THIRD_PARTY_IMAGE",
    "THIRD_PARTY_SCRIPT",
    "SITE_KEY",
    "SPELL_KINDS",
    "UNBLOCK_PATH",
    "CAPTCHA_MODES",
    "AccessRecord",
    "CensusSimulator",
    "LoopbackHTTPServer",
    "Scenario",
    "cedula_key",
    "scenario_for",
    "solve_captcha",
]

logger = logging.getLogger(__name__)

#: The reCAPTCHA site key the simulated page carries (shaped like a real one, 40 characters).
SITE_KEY = "6LcSimuladorCensoRegistraduriaLocal00000"
CONSULTA_PATH = "/back/api/consulta"
ELECCIONES_PATH = "/back/api/elecciones"
USERVERIFY_PATH = "/recaptcha/api2/userverify"
SOLVE_PATH = "/recaptcha/api2/solve"
TOKEN_REJECTED_ERROR = "Token de captcha inválido o expirado"
#: How the checkbox treats a browser (``captcha=``). "challenge", the default, is the live
#: site as every automated browser met it: an image challenge on every click, never a
#: token; a token comes only from a solving service (``token_verifier`` checks it, as the
#: real site's backend asks Google). "click" is the kind behaviour: a token on the click,
#: an image challenge only for scenario 50.
CAPTCHA_MODES = ("challenge", "click")
#: A solving service's check of a token it issued: (valid, why not).
TokenVerifier = Callable[[str], tuple[bool, str]]
#: Control endpoints (loopback clients only): start a blocking spell, end it.
BLOCK_PATH = "/__simulator__/block"
UNBLOCK_PATH = "/__simulator__/unblock"
#: Control endpoint (loopback clients only): change the site's layout, or restore it.
LAYOUT_PATH = "/__simulator__/layout"
_CONTROL_PATHS = (BLOCK_PATH, UNBLOCK_PATH, LAYOUT_PATH)
#: Layout changes (``change_layout``), as the real site makes them without notice:
#: ``renamed_field``: the consulta's answers say ``hallado`` instead of ``encontrado``;
#: ``wrapper``: the consulta's JSON answers come wrapped as ``{"respuesta": <answer>}``;
#: ``form_renamed``: the form's ``#documento`` input is ``#numeroDocumento`` (id and name);
#: ``off_site``: the page answers HTTP 302 to another origin (``elsewhere_url``);
#: ``third_party``: the page also loads a script and an image from that other origin.
LAYOUT_KINDS: tuple[str, ...] = (
    "renamed_field",
    "wrapper",
    "form_renamed",
    "off_site",
    "third_party",
)
#: The paths of the ``third_party`` layout's script and image on the other origin.
THIRD_PARTY_SCRIPT = "/static/tracker.js"
THIRD_PARTY_IMAGE = "/static/pixel.gif"
#: The access-log scenario of a control request.
CONTROL_SCENARIO = "control"
#: Size of the ``huge_body`` answer: 8 MiB.
HUGE_BODY_BYTES = 8 * 1024 * 1024
#: Size of the ``huge_json`` answer, sent without ``Content-Length``: 3 MiB.
HUGE_JSON_BYTES = 3 * 1024 * 1024
#: ``<div>`` nesting of ``deep_html`` and array nesting of ``deep_json``.
DEEP_HTML_LEVELS = 20_000
DEEP_JSON_LEVELS = 100_000
ELECCIONES: dict[str, Any] = {
    "ok": True,
    "data": [
        {
            "id": 0,
            "nombre": "LUGAR DE VOTACION ACTUAL",
            "mensaje": "Consulte el puesto y la mesa donde está inscrita su cédula.",
        }
    ],
}
_CEDULA = re.compile(r"\d{3,10}")
_SEPARATORS = re.compile(r"[.\s\-]")
_MAX_BODY = 64 * 1024
_RESET = 0  # the status recorded for a connection dropped without an answer
_KEY_SALT = "census-simulator-key:"


def cedula_key(cedula: str) -> str:
    """A short pseudonym of a cédula for counting requests per member in the access log.

    The first 12 hex digits of ``sha256("census-simulator-key:" + digits)``, where ``digits``
    is ``census.cedula.normalize(cedula)``, the canonical digits (separators removed); raises
    ``ValueError`` (``InvalidCedula``) when ``cedula`` is not a cédula. Not a secret: anyone
    who knows this scheme can find a cédula from its key by trying all 10**10 numbers, so
    treat keys of real cédulas like the cédulas themselves.
    """
    digits = normalize(cedula)
    return hashlib.sha256((_KEY_SALT + digits).encode()).hexdigest()[:12]


def _key_or_blank(cedula: str) -> str:
    """``cedula_key(cedula)``, or "" when the request carried no valid cédula."""
    if not cedula:
        return ""
    try:
        return cedula_key(cedula)
    except ValueError:
        return ""


@dataclass(frozen=True, kw_only=True)
class AccessRecord:
    """One request the simulator received. Never holds a full cédula."""

    #: Wall-clock arrival time, ``time.time()``.
    time: float
    #: Arrival time on ``time.monotonic()``, for spacing between requests.
    monotonic: float
    method: str
    #: The URL path, without its query string.
    path: str
    #: The cédula the request carried, masked (``*******890``), or "".
    cedula_masked: str
    #: ``cedula_key(cédula)`` when the request carried a valid cédula, else "".
    cedula_key: str = ""
    #: The cédula's scenario name; ``spell_f5`` / ``spell_403`` / ``spell_429`` for a consulta
    #: a blocking spell answered, ``control`` for a ``/__simulator__/`` request, "" for
    #: requests without a cédula.
    scenario: str
    #: The HTTP status sent, or 0 when the connection was reset without an answer.
    status: int
    #: The layout change in force when the request was answered (``LAYOUT_KINDS``), or "" for
    #: the normal layout.
    layout: str = ""


@dataclass(kw_only=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to hold the answer back (the slow scenario).
    delay: float = 0.0
    #: A streamed body of ``length`` bytes, sent instead of ``body`` (the huge_body scenario);
    #: a negative ``length`` sends no ``Content-Length`` and ends the body by closing.
    chunks: Callable[[], Iterator[bytes]] | None = None
    length: int = 0
    #: The layout the request was answered under ("" for the normal one), for its record.
    layout: str = ""


@cache
def _asset(name: str) -> str:
    return (files("census.testing") / "site" / name).read_text(encoding="utf-8")


def _json(status: int, payload: dict[str, Any]) -> _Reply:
    return _Reply(status=status, body=json.dumps(payload, ensure_ascii=False).encode())


def _html(status: int, text: str, **headers: str) -> _Reply:
    return _Reply(
        status=status,
        body=text.encode(),
        content_type="text/html; charset=utf-8",
        headers=headers,
    )


_HUGE_HEAD = (
    b'<!DOCTYPE html>\n<html lang="es"><head><meta charset="utf-8">'
    b"<title>Consulta</title></head><body>\n"
)
_HUGE_TAIL = b"</body></html>\n"
_HUGE_LINE = b"<p>Consulta tu lugar de votacion - contenido de relleno ....</p>\n"
_HUGE_CHUNK = _HUGE_LINE * (64 * 1024 // len(_HUGE_LINE))


def _huge_body() -> Iterator[bytes]:
    """``HUGE_BODY_BYTES`` of HTML in 64 KiB chunks, without building it in memory."""
    yield _HUGE_HEAD
    filler = HUGE_BODY_BYTES - len(_HUGE_HEAD) - len(_HUGE_TAIL)
    for _ in range(filler // len(_HUGE_CHUNK)):
        yield _HUGE_CHUNK
    rest = filler % len(_HUGE_CHUNK)
    if rest:
        yield b" " * (rest - 1) + b"\n"
    yield _HUGE_TAIL


_HUGE_JSON_HEAD = b'{"ok": true, "encontrado": false, "mensaje": "'
_HUGE_JSON_TAIL = b'"}'


def _huge_json() -> Iterator[bytes]:
    """``HUGE_JSON_BYTES`` of one JSON answer in 64 KiB chunks (a message of filler)."""
    yield _HUGE_JSON_HEAD
    filler = HUGE_JSON_BYTES - len(_HUGE_JSON_HEAD) - len(_HUGE_JSON_TAIL)
    chunk = b"x" * (64 * 1024)
    for _ in range(filler // len(chunk)):
        yield chunk
    yield b"x" * (filler % len(chunk))
    yield _HUGE_JSON_TAIL


@cache
def _deep_json() -> bytes:
    return b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS


def _deep_html(cedula: str) -> str:
    message = answers.not_found(cedula)["mensaje"]
    return (
        '<!DOCTYPE html>\n<html lang="es"><head><meta charset="utf-8"><title>Consulta</title>'
        f"</head><body>{'<div>' * DEEP_HTML_LEVELS}<p>{message}</p>"
        f"{'</div>' * DEEP_HTML_LEVELS}</body></html>\n"
    )


def _is_loopback_client(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _loopback_family(host: str) -> socket.AddressFamily:
    """The address family to bind ``host`` with; raises unless it is a loopback address."""
    if host == "localhost":
        return socket.AF_INET
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"CensusSimulator binds to loopback only (127.0.0.1, ::1 or localhost); got {host!r}"
        )
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


class CensusSimulator:
    """The census site on loopback, in a background thread; also a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 120.0,
        retry_after: int = 10,
        access_log_path: str | Path | None = None,
        *,
        token_ttl: float = 120.0,
        captcha: str = "challenge",
        token_verifier: TokenVerifier | str | None = None,
        keep_alive: bool = False,
        on_access: Callable[[AccessRecord], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        elsewhere: str | None = None,
    ) -> None:
        self._family = _loopback_family(host)
        self.host = host
        self.port = port
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.access_log_path = Path(access_log_path) if access_log_path else None
        #: Seconds a captcha token stays valid (single use), as reCAPTCHA's two minutes.
        self.token_ttl = token_ttl
        if captcha not in CAPTCHA_MODES:
            raise ValueError(f"captcha must be one of {CAPTCHA_MODES}; got {captcha!r}")
        #: "challenge" (the live site, the default) or "click" (a token on the click).
        self.captcha = captcha
        #: Checks a token this simulator did not issue: a solving service's ``verify``
        #: (``census.testing.solver``) or the URL of its ``/siteverify``; None accepts only
        #: the simulator's own tokens.
        self.token_verifier = token_verifier
        #: False sends ``Connection: close`` on every answer (see docs/simulator.md).
        self.keep_alive = keep_alive
        self._on_access = on_access
        #: Another origin, where the ``off_site`` and ``third_party`` layouts and the
        #: ``redirect_off_site`` scenario send the browser (no trailing slash); None: this
        #: simulator itself under another host name (``elsewhere_url``).
        self.elsewhere = elsewhere.rstrip("/") if elsewhere else None
        #: Measures token lifetimes and blocking spells (tests may inject a fake one); access
        #: records always carry the real ``time.time()`` and ``time.monotonic()``.
        self._clock = clock
        #: The current blocking spell, (kind, end on ``clock``), or None.
        self._spell: tuple[str, float] | None = None
        #: The layout change in force (one of ``LAYOUT_KINDS``), or None for the normal layout.
        self._layout: str | None = None
        self._lock = threading.Lock()
        self._log: list[AccessRecord] = []
        self._counts: dict[str, int] = {}
        self._tokens: dict[str, float] = {}
        self._rejections: dict[str, int] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CensusSimulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        bind_host = "127.0.0.1" if self.host == "localhost" else self.host
        self._server = _Server((bind_host, self.port), self, self._family)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"census-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; answers held back by the slow scenario are dropped."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CensusSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the origin of the page and its JSON endpoints."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The consulta page, what ``CENSUS_SITE_URL`` points to."""
        return f"{self.base_url}/consultar/"

    @property
    def elsewhere_url(self) -> str:
        """The other origin of the off-site layouts and scenario: ``elsewhere``, else
        ``http://localhost:<port>``: this server under a host name that is another origin
        than ``base_url``'s address. Addressed that way, it serves the plain site (no
        layout change, no ``redirect_off_site``): a look-alike of itself."""
        return self.elsewhere or f"http://localhost:{self.port}"

    def _addressed_elsewhere(self, host: str) -> bool:
        """Whether a request's ``Host`` names ``elsewhere_url`` (this server as the other
        origin)."""
        return self.elsewhere is None and host.lower() == urlsplit(self.elsewhere_url).netloc

    # -- what tests look at -------------------------------------------------------------------

    @property
    def access_log(self) -> list[AccessRecord]:
        """A copy of every request record so far, in arrival order."""
        with self._lock:
            return list(self._log)

    def consultas(self) -> list[AccessRecord]:
        """Only the ``POST /back/api/consulta`` records."""
        return [r for r in self.access_log if r.method == "POST" and r.path == CONSULTA_PATH]

    def consulta_count(self, cedula: str) -> int:
        """How many consulta POSTs carried this cédula since the last ``reset()``."""
        with self._lock:
            return self._counts.get(cedula, 0)

    def reset(self) -> None:
        """Forget the per-cédula counters (flaky scenarios start over), the access log and any
        blocking spell, and restore the normal layout."""
        with self._lock:
            self._counts.clear()
            self._log.clear()
            self._rejections.clear()
            self._spell = None
            self._layout = None

    # -- blocking spells ----------------------------------------------------------------------

    def block_for(self, seconds: float, kind: str = "f5") -> None:
        """For ``seconds`` from now, every consulta POST gets a block answer, whatever it carries.

        ``kind`` is "f5" (the F5 block page, HTTP 200 text/html), "403" or "429" (with
        ``Retry-After: <retry_after>``). A new spell replaces the current one; page loads and
        the captcha endpoints are never blocked. ``unblock()`` or ``reset()`` ends it early.
        """
        if kind not in SPELL_KINDS:
            raise ValueError(f"spell kind must be one of {sorted(SPELL_KINDS)}; got {kind!r}")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"spell seconds must be a finite number >= 0; got {seconds!r}")
        with self._lock:
            self._spell = (kind, self._clock() + seconds)

    def unblock(self) -> None:
        """End the current blocking spell, if any."""
        with self._lock:
            self._spell = None

    @property
    def blocking(self) -> str | None:
        """The kind of the blocking spell in force ("f5", "403", "429"), or None."""
        with self._lock:
            if self._spell is not None and self._clock() >= self._spell[1]:
                self._spell = None
            return self._spell[0] if self._spell is not None else None

    # -- layout changes -----------------------------------------------------------------------

    def change_layout(self, kind: str | None) -> None:
        """From now on, serve the changed layout ``kind``; None restores the normal layout.

        ``kind`` is one of ``LAYOUT_KINDS``: "renamed_field" (consulta answers carry
        ``hallado`` instead of ``encontrado``), "wrapper" (consulta JSON answers come as
        ``{"respuesta": <answer>}``) or "form_renamed" (the form's ``#documento`` input is
        ``#numeroDocumento``), "off_site" (the page answers HTTP 302 to the same path on
        ``elsewhere_url``) or "third_party" (the page also loads a script and an image from
        ``elsewhere_url``). The page's own scripts follow
        the change, as the real site's would. A new kind replaces the current one;
        ``reset()`` restores the normal layout.
        """
        if kind is not None and (not isinstance(kind, str) or kind not in LAYOUT_KINDS):
            raise ValueError(
                f"layout kind must be None or one of {', '.join(LAYOUT_KINDS)}; got {kind!r}"
            )
        with self._lock:
            self._layout = kind

    @property
    def layout(self) -> str | None:
        """The layout change in force (one of ``LAYOUT_KINDS``), or None for the normal one."""
        with self._lock:
            return self._layout

    def issue_token(self) -> str:
        """A fresh single-use captcha token, as the checkbox would get."""
        token = "03A" + secrets.token_urlsafe(384)
        now = self._clock()
        with self._lock:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_ttl
        return token

    # -- request handling (called from the server's threads) ----------------------------------

    def _record(self, record: AccessRecord) -> None:
        with self._lock:
            self._log.append(record)
            if self.access_log_path is not None:
                # One O_APPEND write per line, file closed after it: a reader in another
                # process sees each line as soon as the request is decided.
                line = memoryview((json.dumps(asdict(record)) + "\n").encode())
                fd = os.open(self.access_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    while line:
                        line = line[os.write(fd, line) :]
                finally:
                    os.close(fd)
        if self._on_access is not None:
            try:
                self._on_access(record)
            except Exception:
                # A failing observer must not cost the client its answer.
                logger.exception("census simulator: on_access callback failed")

    def token_rejections(self) -> dict[str, int]:
        """Consultas refused for their token, by why: ``missing``, ``expired`` (this
        simulator's own), or the verifier's reason (``unknown``, ``expired``, ``reused``...)."""
        with self._lock:
            return dict(self._rejections)

    def _redeem(self, token: object) -> bool:
        """Use up a token: one this simulator issued and not expired, or one the
        ``token_verifier`` accepts (it is single use there). Counts each refusal."""
        reason = self._refusal(token)
        if reason is None:
            return True
        with self._lock:
            self._rejections[reason] = self._rejections.get(reason, 0) + 1
        return False

    def _refusal(self, token: object) -> str | None:
        if not isinstance(token, str) or not token:
            return "missing"
        with self._lock:
            expires = self._tokens.pop(token, None)
        if expires is not None:
            return None if expires > self._clock() else "expired"
        verifier = self.token_verifier
        if verifier is None:
            return "unknown"
        ok, reason = _siteverify(verifier, token) if isinstance(verifier, str) else verifier(token)
        return None if ok else (reason or "rejected")

    def _route(
        self, method: str, path: str, body: bytes, client: str = "127.0.0.1", host: str = ""
    ) -> tuple[str, str, _Reply]:
        """(cédula, scenario, reply) for one request from the ``client`` address, to ``host``
        (its ``Host`` header).

        The reply's ``layout`` is the layout the request was answered under ("" for the normal
        one): read once, so that the answer and its record agree.
        """
        elsewhere = self._addressed_elsewhere(host)
        layout = "" if elsewhere else self.layout or ""
        cedula, scenario, reply = self._dispatch(method, path, body, client, layout, elsewhere)
        # A layout control request is answered under the layout it leaves in force.
        reply.layout = (self.layout or "") if path == LAYOUT_PATH else layout
        return cedula, scenario, reply

    def _dispatch(
        self, method: str, path: str, body: bytes, client: str, layout: str, elsewhere: bool
    ) -> tuple[str, str, _Reply]:
        if method == "GET":
            return "", "", self._get(path, layout)
        if path in _CONTROL_PATHS:
            return "", CONTROL_SCENARIO, self._control(path, body, client)
        if path == CONSULTA_PATH:
            return self._consulta(body, layout, elsewhere=elsewhere)
        if path == USERVERIFY_PATH:
            return self._userverify(body)
        if path == SOLVE_PATH:
            payload = _parse(body)
            if payload is None or payload.get("k") != SITE_KEY:
                return "", "", _json(400, {"ok": False, "error": "invalid site key"})
            return "", "", _json(200, {"ok": True, "token": self.issue_token()})
        if self._get(path, layout).status == 200:
            return "", "", _html(405, "<h1>405 Method Not Allowed</h1>", Allow="GET")
        return "", "", _html(404, _asset("not-found.html"))

    def _get(self, path: str, layout: str = "") -> _Reply:
        if path in ("/", "/consultar", "/consultar/"):
            if layout == "off_site":
                return _html(302, "", Location=f"{self.elsewhere_url}{path}")
            page = _asset("consultar.html").replace("{{SITE_KEY}}", SITE_KEY)
            if layout == "form_renamed":
                page = _rename_document_input(page)
            if layout == "third_party":
                page = _add_third_party(page, self.elsewhere_url)
            return _html(200, page)
        if path == ELECCIONES_PATH:
            return _json(200, ELECCIONES)
        static = {
            "/static/consulta.js": ("consulta.js", "text/javascript; charset=utf-8"),
            "/static/consulta.css": ("consulta.css", "text/css; charset=utf-8"),
            "/recaptcha/api.js": ("recaptcha-api.js", "text/javascript; charset=utf-8"),
            "/recaptcha/api2/anchor": ("anchor.html", "text/html; charset=utf-8"),
            "/recaptcha/api2/bframe": ("bframe.html", "text/html; charset=utf-8"),
        }
        if path in static:
            name, content_type = static[path]
            return _Reply(status=200, body=_asset(name).encode(), content_type=content_type)
        return _html(404, _asset("not-found.html"))

    def _userverify(self, body: bytes) -> tuple[str, str, _Reply]:
        """The checkbox click: a token, or (scenario 50) an image challenge and no token."""
        payload = _parse(body)
        if payload is None or payload.get("k") != SITE_KEY:
            return "", "", _json(400, {"ok": False, "error": "invalid site key"})
        cedula = _SEPARATORS.sub("", str(payload.get("documento") or ""))
        scenario = scenario_for(cedula) if _CEDULA.fullmatch(cedula) else ""
        if self.captcha == "challenge" or scenario == Scenario.CAPTCHA_CHALLENGE:
            return cedula, scenario, _json(200, {"ok": True, "challenge": True})
        reply = {"ok": True, "token": self.issue_token(), "expires_in": self.token_ttl}
        return cedula, scenario, _json(200, reply)

    def _control(self, path: str, body: bytes, client: str) -> _Reply:
        """``POST /__simulator__/block`` ``{"seconds": 20, "kind": "f5"}``, ``/unblock``, or
        ``/layout`` ``{"kind": "wrapper"}`` (``{"kind": null}`` restores the layout)."""
        if not _is_loopback_client(client):
            return _json(403, {"ok": False, "error": "control endpoints are for loopback only"})
        if path == UNBLOCK_PATH:
            self.unblock()
            return _json(200, {"ok": True})
        if path == LAYOUT_PATH:
            return self._control_layout(body)
        payload = _parse(body)
        if payload is None:
            return _json(400, {"ok": False, "error": 'expected {"seconds": N, "kind": "f5"}'})
        seconds, kind = payload.get("seconds"), payload.get("kind", "f5")
        try:
            if not isinstance(seconds, int | float):
                raise TypeError(f"spell seconds must be a number; got {seconds!r}")
            self.block_for(seconds, kind)
        except (TypeError, ValueError) as exc:
            return _json(400, {"ok": False, "error": str(exc)})
        return _json(200, {"ok": True, "kind": kind, "seconds": seconds})

    def _control_layout(self, body: bytes) -> _Reply:
        """``POST /__simulator__/layout`` ``{"kind": "wrapper"}`` or ``{"kind": null}``."""
        payload = _parse(body)
        if payload is None or "kind" not in payload:
            expected = (
                f'expected {{"kind": KIND}} with KIND null or one of {", ".join(LAYOUT_KINDS)}'
            )
            return _json(400, {"ok": False, "error": expected})
        kind = payload["kind"]
        try:
            self.change_layout(kind)
        except ValueError as exc:
            return _json(400, {"ok": False, "error": str(exc)})
        return _json(200, {"ok": True, "kind": kind})

    def _count(self, cedula: str) -> int:
        with self._lock:
            count = self._counts[cedula] = self._counts.get(cedula, 0) + 1
        return count

    def _consulta(
        self, body: bytes, layout: str = "", *, elsewhere: bool = False
    ) -> tuple[str, str, _Reply]:
        def app(status: int, answer: dict[str, Any]) -> _Reply:
            # The application's JSON answers, in the layout in force (not F5's, not blocks).
            return _json(status, _in_layout(answer, layout))

        payload = _parse(body)
        spell = self.blocking
        if spell is not None:
            # F5 in front answers before anything looks at the body; the POST still counts.
            documento = str(payload.get("documento") or "") if payload is not None else ""
            if _CEDULA.fullmatch(documento):
                self._count(documento)
            return documento, spell_scenario_name(spell), self._block(SPELL_KINDS[spell])
        if payload is None:
            return "", "bad_request", app(400, answers.error("Solicitud inválida"))
        cedula = str(payload.get("documento") or "")
        if not _CEDULA.fullmatch(cedula):
            reply = app(200, answers.error("El número de documento no es válido"))
            return cedula, "invalid_document", reply
        scenario = scenario_for(cedula)
        count = self._count(cedula)
        effective = scenario
        plan = flaky_plan(cedula)
        if plan is not None:
            effective = plan.failure if count <= plan.failures else Scenario.FOUND

        # What F5 and the upstream servers do never reaches the application: no token is used.
        if elsewhere and effective is Scenario.REDIRECT_OFF_SITE:
            effective = Scenario.FOUND  # the look-alike answers what it was sent
        front = self._front(effective, cedula)
        if front is not None:
            return cedula, scenario, front
        if not self._redeem(payload.get("captchaToken")):
            return cedula, scenario, app(200, answers.error(TOKEN_REJECTED_ERROR))
        if effective is Scenario.TOKEN_REJECTED:
            return cedula, scenario, app(200, answers.error(TOKEN_REJECTED_ERROR))
        if payload.get("eleccionId") not in (0, "0"):
            return cedula, scenario, app(200, answers.error("La elección no es válida"))
        reply = app(200, answers.answer(cedula, effective))
        if effective is Scenario.SLOW:
            reply.delay = self.slow_seconds
        return cedula, scenario, reply

    def _block(self, scenario: Scenario) -> _Reply:
        """The F5 block page (HTTP 200), or the 403 or 429 block answer."""
        if scenario is Scenario.BLOCKED_403:
            return _html(403, _asset("error-403.html"))
        if scenario is Scenario.BLOCKED_429:
            return _html(429, _asset("error-429.html"), **{"Retry-After": str(self.retry_after)})
        support_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        return _html(200, _asset("f5-blocked.html").replace("{{SUPPORT_ID}}", support_id))

    def _front(self, scenario: Scenario, cedula: str) -> _Reply | None:
        """The answer of the layers in front of the application, if they answer at all."""
        if scenario in SPELL_KINDS.values():
            return self._block(scenario)
        if scenario is Scenario.SERVER_ERROR:
            reference = secrets.token_hex(8)
            return _html(500, _asset("error-500.html").replace("{{REFERENCE}}", reference))
        if scenario is Scenario.MALFORMED:
            # A JSON content type and a body cut short: neither the answer nor a known page.
            return _Reply(status=200, body=b'{"ok": true, "encontrado": tr')
        if scenario is Scenario.RESET:
            return _Reply(status=_RESET)
        if scenario in POISON_RETRY_AFTER:
            retry_after = POISON_RETRY_AFTER[scenario]
            return _html(429, _asset("error-429.html"), **{"Retry-After": retry_after})
        if scenario is Scenario.HUGE_BODY:
            return _Reply(
                status=200,
                content_type="text/html; charset=utf-8",
                chunks=_huge_body,
                length=HUGE_BODY_BYTES,
            )
        if scenario is Scenario.DEEP_HTML:
            return _html(200, _deep_html(cedula))
        if scenario is Scenario.DEEP_JSON:
            return _Reply(status=200, body=_deep_json())
        if scenario is Scenario.HUGE_JSON:
            return _Reply(status=200, chunks=_huge_json, length=-1)
        if scenario is Scenario.REDIRECT_OFF_SITE:
            # 307 keeps the method and body: a browser that follows it posts the query there.
            location = f"{self.elsewhere_url}{CONSULTA_PATH}"
            return _Reply(status=307, content_type="text/plain", headers={"Location": location})
        return None


def _in_layout(answer: dict[str, Any], layout: str) -> dict[str, Any]:
    """An application answer of the consulta as the site sends it under ``layout``."""
    if layout == "renamed_field" and "encontrado" in answer:
        # Same place in the object, new name, same value.
        return {("hallado" if key == "encontrado" else key): v for key, v in answer.items()}
    if layout == "wrapper":
        return {"respuesta": answer}
    return answer


def _add_third_party(page: str, elsewhere: str) -> str:
    """The form page that also loads a script and an image from ``elsewhere``."""
    extra = (
        f'<script src="{elsewhere}{THIRD_PARTY_SCRIPT}"></script>'
        f'<img src="{elsewhere}{THIRD_PARTY_IMAGE}" alt="" width="1" height="1">'
    )
    if "</body>" not in page:
        raise RuntimeError("consultar.html: expected a </body>")
    return page.replace("</body>", f"{extra}</body>", 1)


_DOCUMENT_INPUT = re.compile(r'(\b(?:id|name|for)=")documento(")')


def _rename_document_input(page: str) -> str:
    """The form page with its ``#documento`` input (id, name, label) as ``#numeroDocumento``."""
    renamed, count = _DOCUMENT_INPUT.subn(r"\1numeroDocumento\2", page)
    if count != 3:  # the input's id and name, and its label's for
        raise RuntimeError(f"consultar.html: expected 3 documento attributes, renamed {count}")
    return renamed


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that does not look its own name up: the simulator's, and the
    local solving service's (``census.testing.solving_service``)."""

    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


class _Server(LoopbackHTTPServer):
    def __init__(
        self, address: tuple[str, int], simulator: CensusSimulator, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.simulator = simulator
        self.resets: set[socket.socket] = set()
        self.resets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def shutdown_request(self, request: Any) -> None:
        with self.resets_lock:
            reset = request in self.resets
            self.resets.discard(request)
        if reset:
            # SO_LINGER 0 and no shutdown(): close() sends an RST instead of a FIN.
            request.close()
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (a scraper timing out on the slow scenario) are expected.
        logger.debug("census simulator: client error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes request lines to stderr; ours are in the masked access log.
        pass

    def _serve(self, method: str) -> None:
        arrived, arrived_monotonic = time.time(), time.monotonic()
        simulator = self.server.simulator
        path = urlsplit(self.path).path
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, _MAX_BODY))
        client, host = self.client_address[0], self.headers.get("Host") or ""
        cedula, scenario, reply = simulator._route(method, path, body, client, host)
        # Recorded when decided, before any slow delay, so tests see the request at once.
        simulator._record(
            AccessRecord(
                time=arrived,
                monotonic=arrived_monotonic,
                method=method,
                path=path,
                cedula_masked=mask(cedula) if cedula else "",
                cedula_key=_key_or_blank(cedula),
                scenario=str(scenario),
                status=reply.status,
                layout=reply.layout,
            )
        )
        if reply.delay and simulator._stopping.wait(reply.delay):
            reply = _Reply(status=_RESET)
        if reply.status == _RESET:
            self._reset()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        length = reply.length if reply.chunks is not None else len(reply.body)
        if length >= 0:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not simulator.keep_alive or length < 0:  # an undeclared body ends with the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if reply.chunks is None:
            self.wfile.write(reply.body)
            return
        for chunk in reply.chunks():
            if simulator._stopping.is_set():
                self.close_connection = True
                return
            self.wfile.write(chunk)

    def _reset(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.server.resets_lock:
            self.server.resets.add(self.connection)


def _siteverify(url: str, token: str) -> tuple[bool, str]:
    """Ask a solving service's ``/siteverify`` at ``url`` about ``token``, as the real
    site's backend asks Google's: (valid, why not)."""
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode({"secret": "census-simulator", "response": token}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except (OSError, ValueError):
        return False, "verifier_unreachable"
    if answer.get("success") is True:
        return True, ""
    codes = answer.get("error-codes") or ["rejected"]
    return False, str(codes[0])


def solve_captcha(site_key: str, page_url: str) -> str | None:
    """A ``CENSUS_CAPTCHA_SOLVER`` for tests: gets a token from the simulator at ``page_url``."""
    origin = urlsplit(page_url)
    request = urllib.request.Request(
        f"{origin.scheme}://{origin.netloc}{SOLVE_PATH}",
        data=json.dumps({"k": site_key}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response).get("token")
    except (OSError, ValueError):
        return None
    return token if isinstance(token, str) else None
