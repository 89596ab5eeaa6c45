"""One small client for the JSON protocol 2captcha (API v2), CapSolver, Anti-Captcha and
CapMonster Cloud share: ``createTask``, then ``getTaskResult`` until ``ready``; ``getBalance``.

Standard library only (``urllib`` and ``ssl``), no Django: usable from the scraper, a worker or
a shell. TLS is verified against the system's CA bundle, or the one ``SSL_CERT_FILE`` (else
``REQUESTS_CA_BUNDLE``) names; every HTTP call has a timeout; the waits between polls are
injectable, so tests run a 30 s solve in no time.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from census.captcha.errors import (
    CaptchaError,
    CaptchaRequestError,
    CaptchaServiceUnavailable,
    CaptchaSolveTimeout,
    error_for,
)
from census.captcha.services import SERVICES, CaptchaConfig, ServiceSpec

#: Seconds one HTTP call may take (connect, send, answer), whatever the solve's deadline.
REQUEST_TIMEOUT = 30.0
#: The services ask for a wait before the first poll (2captcha: at least 5 s) and a few
#: seconds between polls (CapSolver and CapMonster: about 3 s; 2captcha: 5 s).
FIRST_POLL_SECONDS = 5.0
POLL_SECONDS = 3.0
#: Seconds ``solve`` waits for a token unless told otherwise (reCAPTCHA v2 takes ~30 s).
SOLVE_TIMEOUT = 120.0
#: CapSolver and CapMonster refuse more than 120 ``getTaskResult`` calls for one task.
MAX_POLLS = 120
#: Bytes of an answer read; a token is a few kilobytes.
MAX_ANSWER_BYTES = 1024 * 1024
#: The shortest timeout a call gets near the deadline (a call with none left is not made).
_MIN_CALL_SECONDS = 1.0
#: Failures of one poll that the next poll may outlive (the task is paid: keep asking).
_TRANSIENT = frozenset({"unreachable", "timeout", "server_error"})


def tls_context(environ: Mapping[str, str] = os.environ) -> ssl.SSLContext:
    """A verifying TLS context: the CA bundle of ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``
    (and the directory ``SSL_CERT_DIR``), else the system's."""
    cafile = environ.get("SSL_CERT_FILE") or environ.get("REQUESTS_CA_BUNDLE") or None
    capath = environ.get("SSL_CERT_DIR") or None
    return ssl.create_default_context(cafile=cafile, capath=capath)


class SolvingClient:
    """Asks one solving service for reCAPTCHA v2 tokens.

    ``service`` is a name of ``census.captcha.services.SERVICES``; ``api_url`` replaces the
    service's own base URL (a local solving service, a proxy). ``sleep`` and ``clock``
    (monotonic seconds) are injectable for tests.
    """

    def __init__(
        self,
        service: str,
        api_key: str,
        api_url: str | None = None,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        first_poll: float = FIRST_POLL_SECONDS,
        poll_interval: float = POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown solving service {service!r}; known: {', '.join(SERVICES)}")
        if not api_key:
            raise ValueError("a solving service needs an api_key")
        self.spec: ServiceSpec = SERVICES[service]
        self.api_url = (api_url or self.spec.api_url).rstrip("/")
        self._key = api_key
        self.request_timeout = request_timeout
        self.first_poll = first_poll
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self._tls = tls
        self._opener: urllib.request.OpenerDirector | None = None

    @classmethod
    def from_config(cls, config: CaptchaConfig, **options: Any) -> SolvingClient:
        """The client ``CENSUS_CAPTCHA`` describes (see ``census.captcha.services``)."""
        return cls(config.service, config.api_key, config.api_url, **options)

    def __repr__(self) -> str:
        return f"SolvingClient({self.spec.name!r}, api_url={self.api_url!r})"

    # -- the protocol -------------------------------------------------------------------------

    def now(self) -> float:
        """This client's clock (seconds), on which ``solve``'s deadline is read."""
        return self._clock()

    def solve(
        self,
        site_key: str,
        page_url: str,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> str:
        """A token for the reCAPTCHA ``site_key`` on ``page_url``; raises a ``CaptchaError``.

        Gives up at ``deadline`` (on this client's clock), else ``timeout`` seconds from now
        (default ``SOLVE_TIMEOUT``), with ``CaptchaSolveTimeout``: the task may still be
        solved, and paid, after that.
        """
        if deadline is None:
            deadline = self._clock() + (SOLVE_TIMEOUT if timeout is None else timeout)
        task_id = self.create_task(site_key, page_url, deadline=deadline)
        wait, polls = self.first_poll, 0
        last: CaptchaError | None = None
        while (remaining := deadline - self._clock()) > 0 and polls < MAX_POLLS:
            self._sleep(min(wait, remaining))
            if self._clock() >= deadline:
                break
            wait, polls = self.poll_interval, polls + 1
            try:
                token = self.task_result(task_id, deadline=deadline)
            except CaptchaServiceUnavailable as error:
                if error.reason not in _TRANSIENT:
                    raise
                last = error  # the task is paid for: keep asking until the deadline
                continue
            last = None
            if token is not None:
                return token
        if last is not None:
            raise last
        raise CaptchaSolveTimeout(
            f"{self.spec.name}: no token after {polls} polls (task {task_id})",
            service=self.spec.name,
            reason="timeout",
        )

    def create_task(self, site_key: str, page_url: str, *, deadline: float | None = None) -> Any:
        """Start a task; its id (an integer, or CapSolver's string) for ``task_result``."""
        task = {"type": self.spec.task_type, "websiteURL": page_url, "websiteKey": site_key}
        answer = self._call("createTask", {"task": task}, deadline)
        task_id = answer.get("taskId")
        if isinstance(task_id, bool) or not isinstance(task_id, int | str) or task_id in ("", 0):
            raise self._unexpected("createTask", "an answer without a taskId")
        return task_id

    def task_result(self, task_id: Any, *, deadline: float | None = None) -> str | None:
        """The token once the task is ready; None while it is still being solved."""
        answer = self._call("getTaskResult", {"taskId": task_id}, deadline)
        status = answer.get("status")
        if status in ("processing", "idle"):  # CapSolver says "idle" before a worker takes it
            return None
        if status != "ready":
            raise self._unexpected("getTaskResult", f"status {status!r}")
        solution = answer.get("solution")
        token = None
        if isinstance(solution, dict):
            token = solution.get("gRecaptchaResponse") or solution.get("token")
        if not isinstance(token, str) or not token:
            raise self._unexpected("getTaskResult", "a ready task without a token")
        return token

    def balance(self) -> float:
        """The account's balance, in USD."""
        answer = self._call("getBalance", {}, None)
        value = answer.get("balance")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self._unexpected("getBalance", "an answer without a balance")
        try:
            return float(value)
        except ValueError:
            raise self._unexpected("getBalance", f"balance {value!r}") from None

    # -- transport ----------------------------------------------------------------------------

    def _call(self, method: str, fields: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        """POST ``{"clientKey", **fields}`` to ``<api_url>/<method>``; the answer's JSON object."""
        timeout = self.request_timeout
        if deadline is not None:
            left = deadline - self._clock()
            if left <= 0:
                raise CaptchaSolveTimeout(
                    f"{self.spec.name}: no time left for {method}",
                    service=self.spec.name,
                    reason="timeout",
                )
            timeout = min(timeout, max(left, _MIN_CALL_SECONDS))
        request = urllib.request.Request(
            f"{self.api_url}/{method}",
            data=json.dumps({"clientKey": self._key, **fields}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with self._open(request, timeout) as response:
                status, body = response.status, response.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as answer:  # a 4xx/5xx may still carry the JSON error
            with answer:
                status, body = answer.code, _read_quietly(answer)
        except (OSError, http.client.HTTPException) as error:
            raise self._transport_error(method, error) from error
        return self._read(method, status, body)

    def _open(self, request: urllib.request.Request, timeout: float) -> Any:
        if self._opener is None:
            try:
                context = self._tls if self._tls is not None else tls_context()
            except OSError as error:  # SSL_CERT_FILE names a file that is not there
                raise CaptchaServiceUnavailable(
                    f"{self.spec.name}: cannot load the CA bundle: {error}",
                    service=self.spec.name,
                    reason="tls",
                ) from error
            self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        return self._opener.open(request, timeout=timeout)

    def _read(self, method: str, status: int, body: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            try:
                error_id = int(answer.get("errorId") or 0)
            except (TypeError, ValueError):
                error_id = -1
            if error_id != 0:  # CapSolver sends these with HTTP 400/401, the others with 200
                code = str(answer.get("errorCode") or "")
                raise error_for(self.spec.name, code, str(answer.get("errorDescription") or ""))
        name = self.spec.name
        if status >= 500 or status in (401, 403, 429):
            reason = {401: "refused", 403: "refused", 429: "rate_limited"}.get(status)
            raise CaptchaServiceUnavailable(
                f"{name}: {method} answered HTTP {status}",
                service=name,
                reason=reason or "server_error",
            )
        if status != 200 or not isinstance(answer, dict):
            raise self._unexpected(method, f"HTTP {status} without a JSON object")
        return answer

    def _transport_error(self, method: str, error: BaseException) -> CaptchaServiceUnavailable:
        cause: BaseException = error
        if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
            cause = error.reason  # the socket's or the TLS layer's own error
        if isinstance(cause, ssl.SSLError):
            reason = "tls"
        elif isinstance(cause, TimeoutError):
            reason = "timeout"
        else:
            reason = "unreachable"
        detail = str(cause).strip() or type(cause).__name__
        return CaptchaServiceUnavailable(
            f"{self.spec.name}: {method} failed ({reason}): {detail}"[:300],
            service=self.spec.name,
            reason=reason,
        )

    def _unexpected(self, method: str, what: str) -> CaptchaRequestError:
        return CaptchaRequestError(
            f"{self.spec.name}: {method} gave {what}", service=self.spec.name, reason="answer"
        )


def _read_quietly(answer: urllib.error.HTTPError) -> bytes:
    try:
        return answer.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException):
        return b""
