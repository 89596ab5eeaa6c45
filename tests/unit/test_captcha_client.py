"""census.captcha.client against the local solving service over real HTTP, as each of the four
services: solves, account trouble, failed tasks, outages and TLS, with the ledger after each.

The service and the client share a fake clock and the client's ``sleep`` moves it, so a 20 s
solve polled every 3 s takes no time; only the tests of real timeouts wait (under a second).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from census.captcha import (
    SERVICES,
    CaptchaNotSolved,
    CaptchaRequestError,
    CaptchaServiceUnavailable,
    CaptchaSolveTimeout,
    SolvingClient,
)
from census.testing.solving_service import DEFAULT_API_KEY, DEFAULT_PRICE, NO_SLOT, SolvingService
from tests.sites import FakeClock

pytestmark = pytest.mark.any_database

SITE_KEY = "6LcSimuladorCensoRegistraduriaLocal00000"
PAGE_URL = "https://consultacenso.registraduria.gov.co/consultar/"
FLAVOURS = ("2captcha", "capsolver", "anti-captcha", "capmonster")


@dataclass
class Rig:
    """One flavour's service and the fake clock it shares with its clients."""

    service: SolvingService
    clock: FakeClock

    def client(self, api_key: str = DEFAULT_API_KEY, **options: Any) -> SolvingClient:
        """A client of this flavour's service, polling at 5 s then every 3 s on the fake clock."""
        timing: dict[str, Any] = {"first_poll": 5.0, "poll_interval": 3.0}
        timing |= {"sleep": self.clock.sleep, "clock": self.clock}
        options = {"api_url": self.service.url} | timing | options
        return SolvingClient(self.service.flavour.name, api_key, **options)

    def elapsed_since(self, start: float) -> float:
        return self.clock.now - start


@pytest.fixture(scope="module")
def rigs() -> Iterator[dict[str, Rig]]:
    with contextlib.ExitStack() as stack:
        found = {}
        for name in FLAVOURS:
            clock = FakeClock(1_800_000_000.0)
            service = stack.enter_context(SolvingService(flavour=name, clock=clock))
            found[name] = Rig(service, clock)
        yield found


@pytest.fixture(params=FLAVOURS)
def rig(request: pytest.FixtureRequest, rigs: dict[str, Rig]) -> Rig:
    """Each flavour's service, reset: 10 USD, 3 s solves, no outage."""
    chosen = rigs[request.param]
    chosen.service.reset()
    return chosen


def test_a_solve_polls_until_ready_and_is_paid_once(rig: Rig) -> None:
    """A 20 s solve: createTask with the service's task type, polls at 5 s then every 3 s, the
    token the service issued and charged once, handed over once, valid at the site."""
    rig.service.configure(solve_seconds=20)
    start = rig.clock.now
    token = rig.client().solve(SITE_KEY, PAGE_URL, timeout=120)
    assert rig.elapsed_since(start) == 20
    ledger = rig.service.ledger()
    (task,) = ledger.tasks
    expected_type = SERVICES[rig.service.flavour.name].task_type
    assert (task.task_type, task.site_key, task.page_url) == (expected_type, SITE_KEY, PAGE_URL)
    assert task.token == token and len(token) > 500
    assert task.polls == 6  # at 5, 8, 11, 14 and 17 s not ready (CapSolver: "idle" first), 20 s
    assert (ledger.created, ledger.paid, ledger.delivered, ledger.unsolvable) == (1, 1, 1, 0)
    assert ledger.spent == DEFAULT_PRICE
    assert ledger.balance == round(10.0 - DEFAULT_PRICE, 6)
    assert rig.service.verify(token) == (True, "")


def test_balance_reads_the_account(rig: Rig) -> None:
    """getBalance: the service's balance, as it changes."""
    client = rig.client()
    assert client.balance() == 10.0
    rig.service.balance = 3.25
    assert client.balance() == 3.25


def test_a_wrong_key_is_an_unavailable_service_and_no_task(rig: Rig) -> None:
    """The service's wrong-key code (CapSolver's with HTTP 401) is the service being
    unavailable to us, reason bad_key; nothing is created; the key shows nowhere."""
    client = rig.client(api_key="not-my-key")
    for call in (lambda: client.solve(SITE_KEY, PAGE_URL), client.balance):
        with pytest.raises(CaptchaServiceUnavailable) as caught:
            call()
        assert caught.value.reason == "bad_key"
        assert caught.value.code == rig.service.flavour.bad_key
        assert "not-my-key" not in str(caught.value) + repr(client)
    ledger = rig.service.ledger()
    assert ledger.created == 0 and ledger.errors == {rig.service.flavour.bad_key: 2}


def test_zero_balance_refuses_the_task(rig: Rig) -> None:
    """ERROR_ZERO_BALANCE at createTask: unavailable, reason zero_balance; nothing created
    or charged."""
    rig.service.balance = 0
    with pytest.raises(CaptchaServiceUnavailable) as caught:
        rig.client().solve(SITE_KEY, PAGE_URL)
    assert (caught.value.reason, caught.value.code) == ("zero_balance", "ERROR_ZERO_BALANCE")
    ledger = rig.service.ledger()
    assert (ledger.created, ledger.paid, ledger.balance) == (0, 0, 0.0)


def test_no_free_worker_refuses_the_task(rig: Rig) -> None:
    """ERROR_NO_SLOT_AVAILABLE at createTask: unavailable, reason no_slot; nothing created."""
    rig.service.configure(refuse_with=NO_SLOT)
    with pytest.raises(CaptchaServiceUnavailable) as caught:
        rig.client().solve(SITE_KEY, PAGE_URL)
    assert caught.value.reason == "no_slot"
    assert rig.service.ledger().created == 0


def test_an_unsolvable_task_is_not_solved_and_not_paid(rig: Rig) -> None:
    """The service's unsolvable code after the solve time: CaptchaNotSolved (ask again), not a
    timeout and not the service's unavailability; nothing charged."""
    rig.service.configure(unsolvable=True, solve_seconds=10)
    with pytest.raises(CaptchaNotSolved) as caught:
        rig.client().solve(SITE_KEY, PAGE_URL, timeout=120)
    assert not isinstance(caught.value, CaptchaSolveTimeout)
    assert (caught.value.reason, caught.value.code) == (
        "unsolvable",
        rig.service.flavour.unsolvable,
    )
    ledger = rig.service.ledger()
    assert (ledger.created, ledger.unsolvable, ledger.paid, ledger.spent) == (1, 1, 0, 0.0)
    assert ledger.balance == 10.0


def test_a_refused_connection_is_unavailable_until_the_service_returns(rig: Rig) -> None:
    """The port closed: unavailable, reason unreachable; back on the same port, solves work."""
    rig.service.go_down("refuse")
    with pytest.raises(CaptchaServiceUnavailable) as caught:
        rig.client().solve(SITE_KEY, PAGE_URL)
    assert caught.value.reason == "unreachable"
    rig.service.come_back()
    assert rig.client().solve(SITE_KEY, PAGE_URL)
    assert rig.service.ledger().created == 1


def test_a_solve_slower_than_the_deadline_times_out_and_is_paid_anyway(rig: Rig) -> None:
    """A 200 s solve and a 60 s deadline: CaptchaSolveTimeout at 60 s after 19 polls; the
    service solves and charges it later all the same, a token nobody fetched."""
    rig.service.configure(solve_seconds=200)
    start = rig.clock.now
    with pytest.raises(CaptchaSolveTimeout) as caught:
        rig.client().solve(SITE_KEY, PAGE_URL, timeout=60)
    assert caught.value.reason == "timeout"
    assert rig.elapsed_since(start) == 60
    (task,) = rig.service.ledger().tasks
    assert task.polls == 19 and task.paid is None  # at 5, 8, ..., 59 s
    rig.clock.advance(140)
    ledger = rig.service.ledger()
    assert (ledger.paid, ledger.delivered, ledger.wasted) == (1, 0, 1)


def test_a_deadline_is_an_absolute_time_on_the_clients_clock(rig: Rig) -> None:
    """deadline= replaces timeout=: the same solve ends at that moment."""
    rig.service.configure(solve_seconds=200)
    start = rig.clock.now
    with pytest.raises(CaptchaSolveTimeout):
        rig.client().solve(SITE_KEY, PAGE_URL, deadline=start + 30)
    assert rig.elapsed_since(start) == 30


@pytest.mark.parametrize("outage", ["503", "refuse"])
def test_a_short_outage_while_polling_does_not_lose_the_paid_task(rig: Rig, outage: str) -> None:
    """The service fails the polls at 8 and 11 s (HTTP 503, or refused) and returns at 14 s:
    the client keeps polling the same task and gets its token; no second task."""
    rig.service.configure(solve_seconds=20)
    start = rig.clock.now

    def sleep(seconds: float) -> None:
        rig.clock.advance(seconds)
        if rig.elapsed_since(start) >= 14:
            rig.service.come_back()
        elif rig.elapsed_since(start) >= 8 and rig.service.down is None:
            rig.service.go_down(outage)

    token = rig.client(sleep=sleep).solve(SITE_KEY, PAGE_URL, timeout=120)
    ledger = rig.service.ledger()
    (task,) = ledger.tasks
    assert task.token == token and task.polls == 4  # 5, 14, 17 and 20 s reached the service
    assert ledger.created == 1


def test_an_outage_that_outlasts_the_deadline_is_the_services_failure(rig: Rig) -> None:
    """Polls that keep failing until the deadline end in the outage's error (for the
    breaker), not in a timeout of the task."""
    rig.service.configure(solve_seconds=20)
    start = rig.clock.now

    def sleep(seconds: float) -> None:
        rig.clock.advance(seconds)
        if rig.elapsed_since(start) >= 8 and rig.service.down is None:
            rig.service.go_down("503")

    with pytest.raises(CaptchaServiceUnavailable) as caught:
        rig.client(sleep=sleep).solve(SITE_KEY, PAGE_URL, timeout=30)
    assert caught.value.reason == "server_error"


def test_an_account_error_while_polling_stops_at_once(rig: Rig) -> None:
    """A key revoked mid-solve is not transient: the next poll raises bad_key."""
    rig.service.configure(solve_seconds=20)
    start = rig.clock.now

    def sleep(seconds: float) -> None:
        rig.clock.advance(seconds)
        if rig.elapsed_since(start) >= 8:
            rig.service.configure(api_keys=["another-key"])

    with pytest.raises(CaptchaServiceUnavailable) as caught:
        rig.client(sleep=sleep).solve(SITE_KEY, PAGE_URL, timeout=120)
    assert caught.value.reason == "bad_key"
    assert rig.elapsed_since(start) == 8


def test_an_unknown_method_is_a_request_error(rig: Rig) -> None:
    """A base URL with a wrong path: the service's own error for an unknown method is neither
    the account's nor the task's fault."""
    client = rig.client(api_url=f"{rig.service.url}/v9")
    with pytest.raises(CaptchaRequestError) as caught:
        client.solve(SITE_KEY, PAGE_URL)
    assert caught.value.code == "ERROR_NO_SUCH_METHOD"


def test_a_service_that_never_answers_times_out(rigs: dict[str, Rig]) -> None:
    """Connections accepted, never answered: each call gives up after its own timeout."""
    service = rigs["2captcha"].service
    service.reset()
    service.go_down("hang")
    client = SolvingClient("2captcha", DEFAULT_API_KEY, service.url, request_timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(CaptchaServiceUnavailable) as caught:
            client.balance()
    finally:
        service.come_back()
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 5


def test_real_clocks_a_short_solve_with_fast_polls() -> None:
    """Without fake clocks: a 0.2 s solve polled every 0.05 s returns a token in well under
    the default first wait of 5 s."""
    with SolvingService(solve_seconds=0.2) as service:
        client = SolvingClient(
            "2captcha", DEFAULT_API_KEY, service.url, first_poll=0.05, poll_interval=0.05
        )
        started = time.monotonic()
        token = client.solve(SITE_KEY, PAGE_URL, timeout=10)
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 3
    assert service.verify(token) == (True, "")


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_service(self_signed: tuple[Path, Path]) -> Iterator[SolvingService]:
    cert, key = self_signed
    with SolvingService(certfile=str(cert), keyfile=str(key)) as service:
        yield service


@pytest.fixture
def no_ca_override(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without any CA bundle variable: the system's bundle only."""
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_certificate_the_system_does_not_trust_is_refused(
    https_service: SolvingService, no_ca_override: pytest.MonkeyPatch
) -> None:
    """https to a self-signed service: verification fails, unavailable with reason tls."""
    assert https_service.url.startswith("https://127.0.0.1:")
    client = SolvingClient("2captcha", DEFAULT_API_KEY, https_service.url)
    with pytest.raises(CaptchaServiceUnavailable) as caught:
        client.balance()
    assert caught.value.reason == "tls"


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_ca_bundle_the_environment_names_is_trusted(
    https_service: SolvingService,
    self_signed: tuple[Path, Path],
    no_ca_override: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """SSL_CERT_FILE (or REQUESTS_CA_BUNDLE) naming the certificate: the same call succeeds."""
    no_ca_override.setenv(variable, str(self_signed[0]))
    assert SolvingClient("2captcha", DEFAULT_API_KEY, https_service.url).balance() == 10.0


def test_a_ca_bundle_that_is_not_there_is_a_tls_failure(
    https_service: SolvingService, no_ca_override: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SSL_CERT_FILE naming a missing file: unavailable (tls), saying which bundle."""
    no_ca_override.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(CaptchaServiceUnavailable) as caught:
        SolvingClient("2captcha", DEFAULT_API_KEY, https_service.url).balance()
    assert caught.value.reason == "tls"
    assert "CA bundle" in str(caught.value)


def test_a_client_needs_a_known_service_and_a_key() -> None:
    """Programming errors fail at construction, not at the first solve."""
    with pytest.raises(ValueError, match="unknown solving service"):
        SolvingClient("deathbycaptcha", "k")
    with pytest.raises(ValueError, match="api_key"):
        SolvingClient("2captcha", "")
