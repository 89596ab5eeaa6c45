"""A local captcha-solving service, for tests and the demo: the JSON protocol that 2captcha
(API v2), CapSolver, Anti-Captcha and CapMonster Cloud share, on loopback.

``POST /createTask``, ``/getTaskResult`` and ``/getBalance`` answer as the real services do
(docs/captcha.md lists the fields and error codes, and where they were read). A task is
solved ``solve_seconds`` after it was created, and paid then, whether anyone fetches its token
or not; each token is unique, several hundred characters long, and lives ``token_ttl``
seconds (reCAPTCHA's two minutes). The ledger records every task, payment, delivery and use.

``POST /siteverify`` plays Google's ``siteverify`` for the census-site simulator (the real
site's backend checks each token with Google): a token is valid once, only if this service
issued it, and only while it is young; ``verify()`` does the same in-process.

Every option can change while the service runs (``configure``, ``balance``, ``go_down``), from
any thread. Standard library only, like the simulator.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from census.testing.simulator import LoopbackHTTPServer, _loopback_family
from census.testing.simulator import _parse as _json_object

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SITE_SECRET",
    "FLAVOURS",
    "NO_SLOT",
    "OUTAGES",
    "Flavour",
    "Ledger",
    "ServiceOptions",
    "SolvingService",
    "TaskRecord",
]

#: The API key the service accepts unless told otherwise.
DEFAULT_API_KEY = "census-local-solving-key"
#: The ``secret`` ``/siteverify`` accepts unless told otherwise.
DEFAULT_SITE_SECRET = "census-local-site-secret"
#: USD per solve: the ``cost`` of 2captcha's documented getTaskResult example.
DEFAULT_PRICE = 0.00299
#: Seconds a token is valid after its solve: reCAPTCHA's "valid for two minutes".
TOKEN_TTL = 120.0
#: ``refuse_with`` for a service with no free worker (rate-limited, or too busy).
NO_SLOT = "ERROR_NO_SLOT_AVAILABLE"
#: How the service can be down: ``refuse`` (connections refused: the port is closed),
#: ``hang`` (connections accepted, never answered), ``503`` (an HTML 503 for every request).
OUTAGES = ("refuse", "hang", "503")
#: Why ``verify`` refused a token: never issued here, verified before, too old.
REJECTIONS = ("unknown", "reused", "expired")

#: 2captcha's and Anti-Captcha's numeric ``errorId`` for the codes this service answers.
ERROR_IDS = {
    "ERROR_KEY_DOES_NOT_EXIST": 1,
    "ERROR_NO_SLOT_AVAILABLE": 2,
    "ERROR_ZERO_BALANCE": 10,
    "ERROR_IP_NOT_ALLOWED": 11,
    "ERROR_CAPTCHA_UNSOLVABLE": 12,
    "ERROR_NO_SUCH_METHOD": 14,
    "ERROR_NO_SUCH_CAPCHA_ID": 16,
    "ERROR_IP_BLOCKED": 21,
    "ERROR_TASK_ABSENT": 22,
    "ERROR_TASK_NOT_SUPPORTED": 23,
}
_MAX_BODY = 64 * 1024
_METHODS = ("createTask", "getTaskResult", "getBalance")


@dataclass(frozen=True, kw_only=True)
class Flavour:
    """How one real service differs within the shared protocol."""

    name: str
    #: The ``task.type`` names of a proxyless reCAPTCHA v2 task it accepts.
    task_types: frozenset[str]
    #: Errors come with HTTP 400 (401 for the key) and ``errorId`` 1, as CapSolver sends
    #: them; otherwise HTTP 200 with the numeric ``errorId`` of ``ERROR_IDS``.
    http_errors: bool = False
    #: Task ids are UUID strings (CapSolver), not integers.
    string_task_ids: bool = False
    #: Success answers carry ``errorCode``/``errorDescription`` as null (CapMonster), "" (CapSolver)
    #: or not at all.
    error_fields: Literal["omit", "null", "empty"] = "omit"
    #: The first poll of a task answers ``"idle"`` (CapSolver), not ``"processing"``.
    idle_first: bool = False
    #: The codes it answers for a wrong key and an unsolvable task.
    bad_key: str = "ERROR_KEY_DOES_NOT_EXIST"
    unsolvable: str = "ERROR_CAPTCHA_UNSOLVABLE"


_TWOCAPTCHA = frozenset({"RecaptchaV2TaskProxyless"})
_ANTICAPTCHA = frozenset({"RecaptchaV2TaskProxyless", "NoCaptchaTaskProxyless"})
# CapMonster's current name, and its two former ones (they still appear in its docs).
_CAPMONSTER = frozenset({"RecaptchaV2Task", "RecaptchaV2TaskProxyless", "NoCaptchaTaskProxyless"})
_CAPSOLVER = frozenset({"ReCaptchaV2TaskProxyLess"})

#: The flavours ``SolvingService(flavour=...)`` takes; "any" accepts every task type name.
FLAVOURS: dict[str, Flavour] = {
    flavour.name: flavour
    for flavour in (
        Flavour(name="any", task_types=_TWOCAPTCHA | _ANTICAPTCHA | _CAPMONSTER | _CAPSOLVER),
        Flavour(name="2captcha", task_types=_TWOCAPTCHA),
        Flavour(name="anti-captcha", task_types=_ANTICAPTCHA),
        Flavour(name="capmonster", task_types=_CAPMONSTER, error_fields="null"),
        Flavour(
            name="capsolver",
            task_types=_CAPSOLVER,
            http_errors=True,
            string_task_ids=True,
            error_fields="empty",
            idle_first=True,
            bad_key="ERROR_KEY_DENIED_ACCESS",
            unsolvable="ERROR_CAPTCHA_SOLVE_FAILED",
        ),
    )
}


@dataclass(frozen=True, kw_only=True)
class ServiceOptions:
    """What the service does with the next request; ``SolvingService.configure`` changes it."""

    #: Seconds from ``createTask`` until the task is solved (and paid) or found unsolvable.
    solve_seconds: float = 3.0
    #: The API keys it accepts; any other gets ``ERROR_KEY_DOES_NOT_EXIST``.
    api_keys: frozenset[str] = frozenset({DEFAULT_API_KEY})
    #: USD charged per solve (an unsolvable task costs nothing, as at 2captcha).
    price: float = DEFAULT_PRICE
    #: Every Nth task (counted from the last reset) is unsolvable; 0: none.
    unsolvable_every: int = 0
    #: Every task is unsolvable.
    unsolvable: bool = False
    #: ``createTask`` answers this error code instead of taking the task (``NO_SLOT``,
    #: ``ERROR_IP_BLOCKED``, ...); None takes tasks.
    refuse_with: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    """One task, as the ledger shows it. Times are on the service's clock."""

    task_id: str
    task_type: str
    site_key: str
    page_url: str
    created: float
    #: When its solve time passes: solved and paid then, or found unsolvable.
    ready_at: float
    unsolvable: bool
    #: USD its solve costs (the price when it was created).
    price: float
    #: When it was solved and charged; None while in progress, or for an unsolvable task.
    paid: float | None = None
    #: When it was found unsolvable (at no charge); None otherwise.
    failed: float | None = None
    #: The token (solved tasks only).
    token: str | None = field(default=None, repr=False)
    #: The first ``getTaskResult`` that handed over its token (or its unsolvable error).
    delivered: float | None = None
    #: ``getTaskResult`` calls for it.
    polls: int = 0
    #: The first ``siteverify``/``verify`` of its token (which uses the token up).
    verified: float | None = None
    #: When its token passed verification; None if never, or rejected.
    used: float | None = None

    @property
    def settled(self) -> bool:
        """Solved or found unsolvable: its solve time has passed."""
        return self.paid is not None or self.failed is not None

    @property
    def cost(self) -> float:
        """USD charged for it: its price once solved, nothing before or if unsolvable."""
        return self.price if self.paid is not None else 0.0


@dataclass(frozen=True, kw_only=True)
class Ledger:
    """What the service was asked, did and charged, at one moment."""

    tasks: tuple[TaskRecord, ...]
    #: Tokens ``verify`` refused, by reason (``REJECTIONS``).
    rejected: dict[str, int]
    #: Error answers sent, by ``errorCode``.
    errors: dict[str, int]
    #: Requests received, by method (``createTask``, ``getTaskResult``, ``getBalance``,
    #: ``siteverify``).
    calls: dict[str, int]
    balance: float

    @property
    def created(self) -> int:
        return len(self.tasks)

    @property
    def paid(self) -> int:
        """Solves charged: each issued a token, fetched or not."""
        return sum(task.paid is not None for task in self.tasks)

    @property
    def delivered(self) -> int:
        """Tokens handed over by ``getTaskResult``."""
        return sum(task.paid is not None and task.delivered is not None for task in self.tasks)

    @property
    def unsolvable(self) -> int:
        """Tasks found unsolvable (their solve time passed), at no charge."""
        return sum(task.failed is not None for task in self.tasks)

    @property
    def used(self) -> int:
        """Tokens that passed verification."""
        return sum(task.used is not None for task in self.tasks)

    @property
    def wasted(self) -> int:
        """Solves paid whose token never passed verification (unused, expired, never fetched)."""
        return self.paid - self.used

    @property
    def spent(self) -> float:
        return round(sum(task.cost for task in self.tasks), 6)


@dataclass(kw_only=True)
class _Reply:
    status: int
    payload: dict[str, Any] | None = None
    html: str = ""
    #: Drop the connection without an answer (the "hang" outage, once it gives up).
    drop: bool = False


class SolvingService:
    """A solving service on loopback, served from a background thread; a context manager.

    ``flavour`` (``FLAVOURS``) picks which real service's manners it has; the options of
    ``ServiceOptions`` (``solve_seconds``, ``api_keys``, ``price``, ...) may be given here.
    ``certfile``/``keyfile`` serve https. ``clock`` (seconds) times solves and token ages, and
    stamps the ledger: tests inject a fake one instead of sleeping.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        flavour: str = "any",
        balance: float = 10.0,
        token_ttl: float = TOKEN_TTL,
        site_secret: str = DEFAULT_SITE_SECRET,
        certfile: str | None = None,
        keyfile: str | None = None,
        clock: Callable[[], float] = time.time,
        hang_seconds: float = 300.0,
        on_request: Callable[[str, str, int, str], None] | None = None,
        **options: Any,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}; got {flavour!r}")
        try:
            self._family = _loopback_family(host)
        except ValueError:
            raise ValueError(f"SolvingService binds to loopback only; got {host!r}") from None
        self.host = host
        self.port = port
        self.flavour = FLAVOURS[flavour]
        self.token_ttl = token_ttl
        self.site_secret = site_secret
        self.certfile, self.keyfile = certfile, keyfile
        self.hang_seconds = hang_seconds
        self._clock = clock
        #: Called for each request, before its answer: (method, path, HTTP status, errorCode or "").
        self._on_request = on_request
        self._initial = (_options(ServiceOptions(), options), float(balance))
        self._lock = threading.Lock()
        self._options, self._balance = self._initial
        #: Tasks by id; a record is replaced, never changed, so a ledger's copy stays as it was.
        self._tasks: dict[str, TaskRecord] = {}
        #: Task ids by the token their solve issued.
        self._tokens: dict[str, str] = {}
        self._rejected: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self._next_id = 70_000_000_000 + secrets.randbelow(9_000_000_000)
        self._outage: str | None = None
        self._up = threading.Event()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SolvingService:
        """Bind and serve in a daemon thread; returns self."""
        self._stopping.clear()
        self._up.set()
        self._serve()
        return self

    def stop(self) -> None:
        """Stop serving (connections held by a ``hang`` outage are dropped)."""
        self._stopping.set()
        self._up.set()
        self._close()

    def __enter__(self) -> SolvingService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        if self._server is not None:
            return
        bind_host = "127.0.0.1" if self.host == "localhost" else self.host
        server = _Server((bind_host, self.port), self, self._family)
        if self.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile, self.keyfile)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"census-solving-service-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:<port>``): ``CENSUS_CAPTCHA["api_url"]``."""
        scheme = "https" if self.certfile else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def siteverify_url(self) -> str:
        return f"{self.url}/siteverify"

    def setting(self, service: str | None = None) -> dict[str, Any]:
        """A ``CENSUS_CAPTCHA`` value pointing at this service (``service`` defaults to the
        flavour's name, or "2captcha" for "any")."""
        name = service or (self.flavour.name if self.flavour.name != "any" else "2captcha")
        return {"service": name, "api_key": sorted(self.options.api_keys)[0], "api_url": self.url}

    # -- controls (any thread, while running) -------------------------------------------------

    @property
    def options(self) -> ServiceOptions:
        with self._lock:
            return self._options

    def configure(self, **changes: Any) -> ServiceOptions:
        """Change options of ``ServiceOptions`` from now on; returns the new options."""
        with self._lock:
            self._options = _options(self._options, changes)
            return self._options

    @property
    def balance(self) -> float:
        with self._lock:
            self._settle(self._clock())
            return self._balance

    @balance.setter
    def balance(self, value: float) -> None:
        with self._lock:
            self._settle(self._clock())
            self._balance = float(value)

    def go_down(self, how: str = "refuse") -> None:
        """Stop serving as ``how`` says (``OUTAGES``) until ``come_back()``; tasks keep time."""
        if how not in OUTAGES:
            raise ValueError(f"outage must be one of {', '.join(OUTAGES)}; got {how!r}")
        with self._lock:
            self._outage = how
        if how == "hang":
            self._up.clear()
        elif how == "refuse":
            self._close()  # the port is free until come_back() binds it again

    def come_back(self) -> None:
        """End an outage: serve again, on the same port."""
        with self._lock:
            outage, self._outage = self._outage, None
        self._up.set()
        if outage == "refuse" and not self._stopping.is_set():
            self._serve()

    @property
    def down(self) -> str | None:
        """The outage in force (``OUTAGES``), or None."""
        with self._lock:
            return self._outage

    def reset(self) -> None:
        """Forget every task, token and count; restore the options and balance it started with,
        and end any outage."""
        with self._lock:
            self._options, self._balance = self._initial
            self._tasks.clear()
            self._tokens.clear()
            self._rejected.clear()
            self._errors.clear()
            self._calls.clear()
        self.come_back()

    # -- what tests look at -------------------------------------------------------------------

    def ledger(self) -> Ledger:
        """A snapshot of every task, payment, delivery and use so far."""
        with self._lock:
            self._settle(self._clock())
            return Ledger(
                tasks=tuple(self._tasks.values()),
                rejected=dict(self._rejected),
                errors=dict(self._errors),
                calls=dict(self._calls),
                balance=round(self._balance, 6),
            )

    def verify(self, token: str) -> tuple[bool, str]:
        """Check and use up a token, as the site's backend asks Google: (True, "") the first
        time for a token issued here at most ``token_ttl`` seconds ago; else (False, reason),
        reason one of ``REJECTIONS``."""
        ok, reason, _ = self._verify(token)
        return ok, reason

    def _verify(self, token: object) -> tuple[bool, str, TaskRecord | None]:
        with self._lock:
            now = self._clock()
            self._settle(now)
            task_id = self._tokens.get(token) if isinstance(token, str) else None
            task = self._tasks.get(task_id) if task_id is not None else None
            if task is None or task.paid is None:
                reason = "unknown"
            elif task.verified is not None:
                reason = "reused"
            else:
                fresh = now - task.paid <= self.token_ttl
                task = self._tasks[task.task_id] = replace(
                    task, verified=now, used=now if fresh else None
                )
                if fresh:
                    return True, "", task
                reason = "expired"
            self._rejected[reason] = self._rejected.get(reason, 0) + 1
            return False, reason, task

    # -- the protocol (called from the server's threads) --------------------------------------

    def _settle(self, now: float) -> None:
        """Solve (and charge) or fail every task whose solve time has passed. Lock held."""
        for task in list(self._tasks.values()):
            if task.settled or now < task.ready_at:
                continue
            if task.unsolvable:
                self._tasks[task.task_id] = replace(task, failed=task.ready_at)
                continue
            token = _new_token()
            self._tasks[task.task_id] = replace(task, paid=task.ready_at, token=token)
            self._tokens[token] = task.task_id
            self._balance -= task.price

    def _route(self, path: str, body: bytes, content_type: str) -> _Reply:
        outage = self.down
        if outage == "503":
            return _Reply(status=503, html="<h1>503 Service Temporarily Unavailable</h1>")
        held = outage == "hang" and not self._up.wait(self.hang_seconds)
        if held or self._stopping.is_set():  # given up on, or stopped while held
            return _Reply(status=0, drop=True)
        method = path.strip("/")
        with self._lock:
            self._calls[method] = self._calls.get(method, 0) + 1
        if method == "siteverify":
            return self._siteverify(body, content_type)
        payload = _json_object(body)
        if method not in _METHODS:
            return self._error("ERROR_NO_SUCH_METHOD", f"no method {method!r}", status=404)
        if payload is None:
            return self._error("ERROR_NO_SUCH_METHOD", "the body is not a JSON object")
        with self._lock:
            options = self._options
        key = payload.get("clientKey")
        if not isinstance(key, str) or key not in options.api_keys:
            return self._error(self.flavour.bad_key, "Account authorization key not found")
        if method == "createTask":
            return self._create_task(payload, options)
        if method == "getTaskResult":
            return self._task_result(payload)
        return self._ok({"balance": round(self.balance, 5)})

    def _create_task(self, payload: dict[str, Any], options: ServiceOptions) -> _Reply:
        if options.refuse_with:
            return self._error(options.refuse_with, "refused (the service's refuse_with)")
        task = payload.get("task")
        if not isinstance(task, dict):
            return self._error("ERROR_TASK_ABSENT", "task property is missing")
        if task.get("type") not in self.flavour.task_types:
            return self._error("ERROR_TASK_NOT_SUPPORTED", f"task type {task.get('type')!r}")
        url, key = task.get("websiteURL"), task.get("websiteKey")
        if not isinstance(url, str) or not url or not isinstance(key, str) or not key:
            return self._error("ERROR_TASK_ABSENT", "websiteURL and websiteKey are required")
        with self._lock:
            now = self._clock()
            self._settle(now)
            reserved = sum(t.price for t in self._tasks.values() if not t.settled)
            if self._balance - reserved < max(options.price, 1e-9):
                zero_balance = True
            else:
                zero_balance = False
                number = len(self._tasks) + 1
                every = options.unsolvable_every
                self._next_id += 1
                task_id = str(self._next_id)
                if self.flavour.string_task_ids:
                    task_id = secrets.token_hex(16)
                self._tasks[task_id] = TaskRecord(
                    task_id=task_id,
                    task_type=str(task["type"]),
                    site_key=key,
                    page_url=url,
                    created=now,
                    ready_at=now + options.solve_seconds,
                    unsolvable=options.unsolvable or bool(every and number % every == 0),
                    price=options.price,
                )
        if zero_balance:
            return self._error("ERROR_ZERO_BALANCE", "You don't have funds on your account")
        return self._ok({"taskId": task_id if self.flavour.string_task_ids else int(task_id)})

    def _task_result(self, payload: dict[str, Any]) -> _Reply:
        with self._lock:
            now = self._clock()
            self._settle(now)
            task = self._tasks.get(str(payload.get("taskId")))
            if task is not None:
                delivered = now if task.settled and task.delivered is None else task.delivered
                task = replace(task, polls=task.polls + 1, delivered=delivered)
                self._tasks[task.task_id] = task
        if task is None:
            return self._error("ERROR_NO_SUCH_CAPCHA_ID", "no such task")
        if not task.settled:
            idle = self.flavour.idle_first and task.polls == 1
            return self._ok({"status": "idle" if idle else "processing"})
        if task.unsolvable:
            return self._error(self.flavour.unsolvable, "Workers could not solve the Captcha")
        return self._ok(
            {
                "status": "ready",
                "solution": {"gRecaptchaResponse": task.token},
                "cost": f"{task.cost:.5f}",
                "ip": "127.0.0.1",
                "createTime": int(task.created),
                "endTime": int(task.ready_at),
                "solveCount": 1,
            }
        )

    def _siteverify(self, body: bytes, content_type: str) -> _Reply:
        """Google's ``siteverify``: ``secret`` and ``response``, as a form (or JSON)."""
        if "json" in content_type:
            fields_ = _json_object(body) or {}
        else:
            fields_ = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        secret, token = fields_.get("secret"), fields_.get("response")
        codes: list[str] = []
        if not secret:
            codes.append("missing-input-secret")
        elif secret != self.site_secret:
            codes.append("invalid-input-secret")
        if not token:
            codes.append("missing-input-response")
        if codes:
            return _Reply(status=200, payload={"success": False, "error-codes": codes})
        ok, reason, task = self._verify(token)
        if not ok or task is None or task.paid is None:
            code = "invalid-input-response" if reason == "unknown" else "timeout-or-duplicate"
            return _Reply(status=200, payload={"success": False, "error-codes": [code]})
        solved = datetime.fromtimestamp(task.paid, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        host = urlsplit(task.page_url).hostname or ""
        return _Reply(
            status=200,
            payload={"success": True, "challenge_ts": solved, "hostname": host, "error-codes": []},
        )

    def _ok(self, payload: dict[str, Any]) -> _Reply:
        fields_: dict[str, Any] = {"errorId": 0}
        if self.flavour.error_fields != "omit":
            blank = None if self.flavour.error_fields == "null" else ""
            fields_ |= {"errorCode": blank, "errorDescription": blank}
        return _Reply(status=200, payload=fields_ | payload)

    def _error(self, code: str, description: str, status: int = 200) -> _Reply:
        with self._lock:
            self._errors[code] = self._errors.get(code, 0) + 1
        error_id = ERROR_IDS.get(code, 1)
        if self.flavour.http_errors:
            error_id, status = 1, (401 if code == self.flavour.bad_key else 400)
        payload = {"errorId": error_id, "errorCode": code, "errorDescription": description}
        return _Reply(status=status, payload=payload)


def _options(current: ServiceOptions, changes: dict[str, Any]) -> ServiceOptions:
    known = {f.name for f in fields(ServiceOptions)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown options {unknown}; known: {sorted(known)}")
    if "api_keys" in changes:
        keys: str | Iterable[str] = changes["api_keys"]
        changes = {**changes, "api_keys": frozenset([keys] if isinstance(keys, str) else keys)}
    return replace(current, **changes)


def _new_token() -> str:
    """Opaque and unique, shaped like a reCAPTCHA response (``03A`` and ~640 URL-safe chars)."""
    return "03A" + secrets.token_urlsafe(480)


class _Server(LoopbackHTTPServer):
    # socketserver's backlog of 5 resets connections when a pool of workers asks at once.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], service: SolvingService, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.service = service
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up, TLS handshakes a test makes fail on purpose


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_BODY))
        service = self.server.service
        path = urlsplit(self.path).path
        reply = service._route(path, body, self.headers.get("Content-Type") or "")
        if reply.drop:
            self.close_connection = True
            return
        if reply.payload is not None:
            data, content_type = json.dumps(reply.payload).encode(), "application/json"
        else:
            data, content_type = reply.html.encode(), "text/html; charset=utf-8"
        if service._on_request is not None:  # before the answer: a client never outruns it
            code = str((reply.payload or {}).get("errorCode") or "")
            service._on_request("POST", path, reply.status, code)
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.send_error(405, "the protocol is POST only")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # on_request reports requests; never the API keys they carry
