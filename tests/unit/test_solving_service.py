"""census.testing.solving_service on the wire: the shared protocol's fields and error codes,
each flavour's manners, siteverify, the ledger, outages, and the command and fixtures."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from census.testing.solving_service import (
    DEFAULT_API_KEY,
    DEFAULT_PRICE,
    DEFAULT_SITE_SECRET,
    NO_SLOT,
    SolvingService,
)
from tests.sites import FakeClock, django_command, stop_command

pytestmark = pytest.mark.any_database

SITE_KEY = "6LcSimuladorCensoRegistraduriaLocal00000"
PAGE_URL = "https://consultacenso.registraduria.gov.co/consultar/"
TASK = {"type": "RecaptchaV2TaskProxyless", "websiteURL": PAGE_URL, "websiteKey": SITE_KEY}


def post(url: str, payload: Any, *, form: bool = False) -> tuple[int, dict[str, Any]]:
    """POST JSON (or a form) and read the JSON answer, whatever its HTTP status."""
    if form:
        data = urllib.parse.urlencode(payload).encode()
        kind = "application/x-www-form-urlencoded"
    else:
        data, kind = json.dumps(payload).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


class Wire:
    """Raw protocol calls to one service."""

    def __init__(self, service: SolvingService) -> None:
        self.service = service

    def call(self, method: str, **fields: Any) -> tuple[int, dict[str, Any]]:
        return post(f"{self.service.url}/{method}", {"clientKey": DEFAULT_API_KEY, **fields})

    def create(self, task: dict[str, Any] = TASK) -> Any:
        status, answer = self.call("createTask", task=task)
        assert status == 200 and answer["errorId"] == 0, answer
        return answer["taskId"]

    def result(self, task_id: Any) -> dict[str, Any]:
        return self.call("getTaskResult", taskId=task_id)[1]

    def solved_token(self, clock: FakeClock) -> str:
        task_id = self.create()
        clock.advance(self.service.options.solve_seconds)
        token: str = self.result(task_id)["solution"]["gRecaptchaResponse"]
        return token

    def siteverify(self, token: str, secret: str = DEFAULT_SITE_SECRET) -> dict[str, Any]:
        status, answer = post(
            self.service.siteverify_url, {"secret": secret, "response": token}, form=True
        )
        assert status == 200
        return answer


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture(scope="module")
def module_service(clock: FakeClock) -> Iterator[SolvingService]:
    with SolvingService(clock=clock, solve_seconds=10) as service:
        yield service


@pytest.fixture
def wire(module_service: SolvingService) -> Wire:
    """The module's service ("any" flavour, 10 s solves, fake clock), reset."""
    module_service.reset()
    return Wire(module_service)


# -- the protocol ------------------------------------------------------------------------------


def test_a_task_is_processing_then_ready_with_2captchas_fields(
    wire: Wire, clock: FakeClock
) -> None:
    """createTask -> an integer taskId; getTaskResult -> processing until the solve time,
    then ready with solution.gRecaptchaResponse, cost, createTime, endTime and solveCount."""
    task_id = wire.create()
    assert isinstance(task_id, int)
    assert wire.result(task_id) == {"errorId": 0, "status": "processing"}
    clock.advance(10)
    answer = wire.result(task_id)
    token = answer["solution"]["gRecaptchaResponse"]
    assert answer["errorId"] == 0 and answer["status"] == "ready"
    assert answer["cost"] == f"{DEFAULT_PRICE:.5f}" and answer["solveCount"] == 1
    assert answer["endTime"] - answer["createTime"] == 10
    assert token.startswith("03A") and len(token) > 500
    assert wire.result(task_id)["solution"]["gRecaptchaResponse"] == token  # same answer again


def test_tokens_are_unique(wire: Wire, clock: FakeClock) -> None:
    """Twenty solves, twenty different tokens."""
    ids = [wire.create() for _ in range(20)]
    clock.advance(10)
    tokens = {wire.result(task_id)["solution"]["gRecaptchaResponse"] for task_id in ids}
    assert len(tokens) == 20


def test_get_balance_and_the_charge_at_the_solve(wire: Wire, clock: FakeClock) -> None:
    """getBalance answers the balance; a solve is charged when its solve time passes, whether
    or not anyone fetched it."""
    assert wire.call("getBalance") == (200, {"errorId": 0, "balance": 10.0})
    wire.create()
    clock.advance(10)
    assert wire.call("getBalance")[1]["balance"] == round(10 - DEFAULT_PRICE, 5)
    ledger = wire.service.ledger()
    assert (ledger.paid, ledger.delivered) == (1, 0)


@pytest.mark.parametrize(
    ("fields", "code", "error_id"),
    [
        ({"clientKey": "nope"}, "ERROR_KEY_DOES_NOT_EXIST", 1),
        ({"task": {**TASK, "type": "HCaptchaTaskProxyless"}}, "ERROR_TASK_NOT_SUPPORTED", 23),
        ({"task": None}, "ERROR_TASK_ABSENT", 22),
        ({"task": {**TASK, "websiteKey": ""}}, "ERROR_TASK_ABSENT", 22),
    ],
)
def test_create_task_errors_carry_the_documented_ids(
    wire: Wire, fields: dict[str, Any], code: str, error_id: int
) -> None:
    """Errors are HTTP 200 with 2captcha's / Anti-Captcha's errorId, errorCode and a
    description."""
    payload = {"clientKey": DEFAULT_API_KEY, "task": TASK, **fields}
    status, answer = post(f"{wire.service.url}/createTask", payload)
    assert status == 200
    assert (answer["errorId"], answer["errorCode"]) == (error_id, code)
    assert answer["errorDescription"]
    assert wire.service.ledger().errors == {code: 1}


def test_an_unknown_task_id_is_no_such_captcha(wire: Wire) -> None:
    """getTaskResult for a task this service never made: ERROR_NO_SUCH_CAPCHA_ID (16)."""
    answer = wire.result(123)
    assert (answer["errorId"], answer["errorCode"]) == (16, "ERROR_NO_SUCH_CAPCHA_ID")


def test_every_nth_task_is_unsolvable_and_free(wire: Wire, clock: FakeClock) -> None:
    """unsolvable_every=3: the 3rd and 6th tasks fail with ERROR_CAPTCHA_UNSOLVABLE (12) after
    their solve time, at no charge."""
    wire.service.configure(unsolvable_every=3)
    ids = [wire.create() for _ in range(6)]
    clock.advance(10)
    failed = [i for i, task_id in enumerate(ids, 1) if wire.result(task_id)["errorId"] == 12]
    assert failed == [3, 6]
    ledger = wire.service.ledger()
    assert (ledger.paid, ledger.unsolvable, ledger.spent) == (4, 2, round(4 * DEFAULT_PRICE, 6))


def test_a_balance_that_cannot_pay_for_one_more_solve_refuses_it(wire: Wire) -> None:
    """Balance for two solves: two tasks in progress reserve it all, the third gets
    ERROR_ZERO_BALANCE (10)."""
    wire.service.balance = 2 * DEFAULT_PRICE
    wire.create()
    wire.create()
    answer = wire.call("createTask", task=TASK)[1]
    assert (answer["errorId"], answer["errorCode"]) == (10, "ERROR_ZERO_BALANCE")
    assert wire.service.ledger().created == 2


def test_refuse_with_answers_createtask_with_that_code(wire: Wire) -> None:
    """refuse_with=NO_SLOT: ERROR_NO_SLOT_AVAILABLE (2) until cleared."""
    wire.service.configure(refuse_with=NO_SLOT)
    assert wire.call("createTask", task=TASK)[1]["errorId"] == 2
    wire.service.configure(refuse_with=None)
    assert wire.create()


@pytest.mark.parametrize(
    ("flavour", "accepted"),
    [
        ("2captcha", {"RecaptchaV2TaskProxyless"}),
        ("anti-captcha", {"RecaptchaV2TaskProxyless", "NoCaptchaTaskProxyless"}),
        ("capmonster", {"RecaptchaV2Task", "RecaptchaV2TaskProxyless", "NoCaptchaTaskProxyless"}),
        ("capsolver", {"ReCaptchaV2TaskProxyLess"}),
        (
            "any",
            {
                "RecaptchaV2TaskProxyless",
                "NoCaptchaTaskProxyless",
                "RecaptchaV2Task",
                "ReCaptchaV2TaskProxyLess",
            },
        ),
    ],
)
def test_each_flavour_takes_its_own_task_type_names(flavour: str, accepted: set[str]) -> None:
    """A flavour refuses another service's name for the task (ERROR_TASK_NOT_SUPPORTED)."""
    names = {"RecaptchaV2TaskProxyless", "NoCaptchaTaskProxyless", "RecaptchaV2Task"}
    names |= {"ReCaptchaV2TaskProxyLess", "RecaptchaV3TaskProxyless"}
    with SolvingService(flavour=flavour) as service:
        wire = Wire(service)
        taken = {
            name
            for name in names
            if wire.call("createTask", task={**TASK, "type": name})[1].get("taskId")
        }
    assert taken == accepted


def test_capsolver_errors_use_http_statuses_and_string_ids() -> None:
    """The capsolver flavour: string task ids, "idle" first, "" error fields on success, and
    errors as HTTP 400 (401 for the key) with errorId 1."""
    with SolvingService(flavour="capsolver", solve_seconds=60) as service:
        wire = Wire(service)
        task_id = wire.create({**TASK, "type": "ReCaptchaV2TaskProxyLess"})
        assert isinstance(task_id, str)
        first = wire.result(task_id)
        assert first == {"errorId": 0, "errorCode": "", "errorDescription": "", "status": "idle"}
        assert wire.result(task_id)["status"] == "processing"
        status, answer = post(f"{service.url}/getBalance", {"clientKey": "nope"})
        assert (status, answer["errorId"], answer["errorCode"]) == (
            401,
            1,
            "ERROR_KEY_DENIED_ACCESS",
        )
        status, answer = wire.call("createTask", task=TASK)  # another service's type name
        assert (status, answer["errorId"]) == (400, 1)


def test_capmonster_sends_null_error_fields_on_success() -> None:
    """The capmonster flavour answers {"errorCode": null, "errorDescription": null, ...}."""
    with SolvingService(flavour="capmonster") as service:
        answer = Wire(service).call("getBalance")[1]
    assert answer == {"errorId": 0, "errorCode": None, "errorDescription": None, "balance": 10.0}


# -- siteverify and verify ---------------------------------------------------------------------


def test_siteverify_accepts_a_fresh_token_once(wire: Wire, clock: FakeClock) -> None:
    """Google's answer for a good token: success, the solve's time and the page's host; the
    same token again is timeout-or-duplicate."""
    token = wire.solved_token(clock)
    answer = wire.siteverify(token)
    assert answer["success"] is True and answer["error-codes"] == []
    assert answer["hostname"] == "consultacenso.registraduria.gov.co"
    assert answer["challenge_ts"].endswith("Z")
    assert wire.siteverify(token) == {"success": False, "error-codes": ["timeout-or-duplicate"]}
    ledger = wire.service.ledger()
    assert (ledger.used, ledger.rejected) == (1, {"reused": 1})


def test_siteverify_refuses_an_expired_and_an_unknown_token(wire: Wire, clock: FakeClock) -> None:
    """A token 121 s after its solve: timeout-or-duplicate; one never issued here:
    invalid-input-response. Each counted under its reason."""
    token = wire.solved_token(clock)
    clock.advance(121)
    assert wire.siteverify(token)["error-codes"] == ["timeout-or-duplicate"]
    assert wire.siteverify("03A" + "x" * 600)["error-codes"] == ["invalid-input-response"]
    ledger = wire.service.ledger()
    assert ledger.rejected == {"expired": 1, "unknown": 1}
    assert (ledger.paid, ledger.used, ledger.wasted) == (1, 0, 1)


def test_siteverify_checks_its_secret_and_fields(wire: Wire, clock: FakeClock) -> None:
    """A wrong or missing secret and a missing response are Google's input errors; they do
    not use the token up. JSON bodies are read too."""
    token = wire.solved_token(clock)
    assert wire.siteverify(token, secret="wrong")["error-codes"] == ["invalid-input-secret"]
    status, answer = post(wire.service.siteverify_url, {"response": token}, form=True)
    assert answer["error-codes"] == ["missing-input-secret"]
    answer = post(wire.service.siteverify_url, {"secret": DEFAULT_SITE_SECRET}, form=True)[1]
    assert answer["error-codes"] == ["missing-input-response"]
    answer = post(wire.service.siteverify_url, {"secret": DEFAULT_SITE_SECRET, "response": token})
    assert answer[1]["success"] is True


def test_verify_in_process_draws_the_line_at_the_ttl(wire: Wire, clock: FakeClock) -> None:
    """verify(): valid up to exactly token_ttl (120 s) after the solve, expired just after."""
    older, newer = wire.solved_token(clock), wire.solved_token(clock)
    clock.advance(120 - 10)  # the older token is now exactly 120 s old, the newer 110 s
    assert wire.service.verify(newer) == (True, "")
    assert wire.service.verify(older) == (True, "")
    another = wire.solved_token(clock)
    clock.advance(120.001)
    assert wire.service.verify(another) == (False, "expired")
    assert wire.service.verify(another) == (False, "reused")
    assert wire.service.verify("never-issued") == (False, "unknown")
    assert wire.service.ledger().rejected == {"expired": 1, "reused": 1, "unknown": 1}


def test_the_ledger_follows_one_task_from_creation_to_use(wire: Wire, clock: FakeClock) -> None:
    """Created, polled, paid at its solve time, delivered when fetched, used when verified."""
    start = clock.now
    task_id = wire.create()
    wire.result(task_id)
    clock.advance(12)
    token = wire.result(task_id)["solution"]["gRecaptchaResponse"]
    clock.advance(3)
    wire.service.verify(token)
    (task,) = wire.service.ledger().tasks
    assert task.task_id == str(task_id)
    assert (task.created, task.paid, task.delivered, task.used) == (
        start,
        start + 10,
        start + 12,
        start + 15,
    )
    assert (task.polls, task.cost, task.failed) == (2, DEFAULT_PRICE, None)
    assert wire.service.ledger().calls == {"createTask": 1, "getTaskResult": 2}


# -- outages, controls, concurrency ------------------------------------------------------------


def test_outages_refuse_hang_and_503(wire: Wire) -> None:
    """refuse closes the port; 503 answers an HTML 503; hang holds the request until the
    service comes back, then answers it. After each, the same port serves again."""
    wire.service.go_down("refuse")
    with pytest.raises(urllib.error.URLError):
        wire.call("getBalance")
    wire.service.come_back()
    wire.service.go_down("503")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(f"{wire.service.url}/getBalance", b"{}"))
    assert caught.value.code == 503
    caught.value.close()
    wire.service.come_back()
    wire.service.go_down("hang")
    answers: list[tuple[int, dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: answers.append(wire.call("getBalance")))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and answers == []
    wire.service.come_back()
    waiter.join(timeout=10)
    assert answers == [(200, {"errorId": 0, "balance": 10.0})]


def test_reset_restores_the_first_options_balance_and_service(wire: Wire) -> None:
    """reset(): the options and balance it was built with, no tasks, no outage."""
    wire.service.configure(solve_seconds=1, refuse_with=NO_SLOT, api_keys="other")
    wire.service.balance = 0
    wire.service.go_down("refuse")
    wire.service.reset()
    assert wire.service.options.solve_seconds == 10 and wire.service.options.refuse_with is None
    assert wire.service.options.api_keys == frozenset({DEFAULT_API_KEY})
    assert (wire.service.balance, wire.service.down) == (10.0, None)
    assert wire.create()


def test_concurrent_tasks_get_distinct_ids(wire: Wire) -> None:
    """Sixteen threads creating tasks at once: sixteen tasks, sixteen ids."""
    ids: list[Any] = []
    threads = [threading.Thread(target=lambda: ids.append(wire.create())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(set(ids)) == 16 == wire.service.ledger().created


def test_bad_construction_is_refused() -> None:
    """An unknown flavour or option, an outage kind or a non-loopback host: ValueError."""
    with pytest.raises(ValueError, match="flavour"):
        SolvingService(flavour="deathbycaptcha")
    with pytest.raises(ValueError, match="unknown options"):
        SolvingService(solve_time=3)
    with pytest.raises(ValueError, match="loopback"):
        SolvingService(host="0.0.0.0")
    with pytest.raises(ValueError, match="outage"):
        SolvingService().go_down("sideways")


def test_setting_points_census_at_the_service(wire: Wire) -> None:
    """setting() is a CENSUS_CAPTCHA value for this service (test_captcha_solver uses it)."""
    value = wire.service.setting()
    assert value == {"service": "2captcha", "api_key": DEFAULT_API_KEY, "api_url": wire.service.url}
    assert wire.service.setting("capmonster")["service"] == "capmonster"


# -- the pytest fixtures and the management command --------------------------------------------


def test_census_captcha_service_is_the_session_service_reset(
    request: pytest.FixtureRequest,
) -> None:
    """census_captcha_service hands back the running session service, reset."""
    session = request.getfixturevalue("census_solving_service")
    session.configure(solve_seconds=99)
    session.balance = 1
    service = request.getfixturevalue("census_captcha_service")
    assert service is session
    assert (service.options.solve_seconds, service.balance) == (3.0, 10.0)


def test_the_command_serves_until_sigterm_and_prints_its_ledger() -> None:
    """manage.py census_solving_service prints the URL and the setting, answers the protocol,
    prints each request without its key, and its ledger when SIGTERM stops it."""
    proc = django_command(
        "census_solving_service", "--port", "0", "--key", "k-123", "--balance", "2"
    )
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        assert first.startswith("Solving service serving http://127.0.0.1:"), first
        banner = [proc.stdout.readline() for _ in range(3)]
        url = first.split()[-1]
        assert json.loads(banner[1]) == {"service": "2captcha", "api_key": "k-123", "api_url": url}
        assert post(f"{url}/getBalance", {"clientKey": "k-123"}) == (
            200,
            {"errorId": 0, "balance": 2.0},
        )
        assert post(f"{url}/getBalance", {"clientKey": "wrong"})[1]["errorId"] == 1
    finally:
        out = stop_command(proc)
    assert proc.returncode == 0
    assert "POST /getBalance -> 200\n" in out
    assert "POST /getBalance -> 200 ERROR_KEY_DOES_NOT_EXIST" in out
    assert "Solving service stopped. Tasks 0, paid 0" in out
    assert "wrong" not in out
