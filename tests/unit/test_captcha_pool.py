"""census.captcha's token pool: solves asked ahead against the local solving service (real
HTTP), taken by attempts before any browser opens, settled after, and the service's breaker.

The pool's rounds (``filler.fill``) run here in the test's thread; the real-process proof is
tests/integration/test_captcha_cluster.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from census.captcha import breaker, filler, policy, pool
from census.captcha.pool import Held, NoTokenHeld
from census.gate import pause
from census.models import CaptchaService, CaptchaToken, CedulaInfo, Status
from census.outcomes import Outcome
from census.scraper.base import LookupResult
from census.testing.solving_service import SolvingService
from tests.factories import member

pytestmark = pytest.mark.django_db(transaction=True)

SITE_KEY = "6LcSimuladorCensoRegistraduriaLocal00000"
PAGE_URL = "http://127.0.0.1:8765/consultar/"
State = CaptchaToken.State


@pytest.fixture
def service(settings: Any, census_captcha_service: SolvingService, monkeypatch: Any) -> Any:
    """The pool on, against the local service solving at once; polls due at once."""
    census_captcha_service.configure(solve_seconds=0)
    settings.CENSUS_CAPTCHA = census_captcha_service.setting()
    settings.CENSUS_CAPTCHA_POOL = True
    settings.CENSUS_RATE_LIMIT_SECONDS = 5.0
    monkeypatch.setattr(filler, "FIRST_POLL_SECONDS", 0.0)
    return census_captcha_service


def _due(count: int) -> list[int]:
    """``count`` lookups queued (pending), as registrations leave them."""
    return [CedulaInfo.objects.get(user=member()).pk for _ in range(count)]


def _fill_until_ready(expected: int) -> None:
    for _ in range(50):
        filler.fill()
        if CaptchaToken.objects.filter(state=State.READY).count() >= expected:
            return
    raise AssertionError(f"fewer than {expected} tokens became ready")


# -- the pure rules -------------------------------------------------------------------------


def test_depth_is_the_gates_rate_times_the_solve_time_plus_one() -> None:
    """30 s solves at one consulta per 5 s: 7 in flight; no rate limit: the cap."""
    assert policy.depth(30.0, 5.0) == 7
    assert policy.depth(2.0, 5.0) == 2
    assert policy.depth(30.0, 0.0) == policy.MAX_DEPTH


def test_solves_asked_never_exceed_the_lookups_due_or_the_days_limit() -> None:
    """to_ask: up to the depth in flight, no more than due, no more than the day allows."""
    assert policy.to_ask(due=3, in_flight=0, depth=7) == 3
    assert policy.to_ask(due=20, in_flight=4, depth=7) == 3
    assert policy.to_ask(due=20, in_flight=9, depth=7) == 0
    assert policy.to_ask(due=20, in_flight=0, depth=7, daily_left=2) == 2
    assert policy.to_ask(due=20, in_flight=0, depth=7, daily_left=-1) == 0


def test_a_waiting_lookup_looks_again_when_its_place_in_line_is_solved() -> None:
    """The n-th waiting lookup waits for the n-th solve in flight, else a new solve and the
    gate's turns; never less than MIN_WAIT nor more than MAX_WAIT."""
    assert policy.wait_for_token(0, [12.0, 3.0], solve_seconds=30, interval=5) == 3.0
    assert policy.wait_for_token(1, [12.0, 3.0], solve_seconds=30, interval=5) == 12.0
    assert policy.wait_for_token(3, [12.0, 3.0], solve_seconds=30, interval=5) == 35.0
    assert policy.wait_for_token(0, [-4.0], solve_seconds=30, interval=5) == policy.MIN_WAIT
    assert policy.wait_for_token(40, [], solve_seconds=30, interval=5) == policy.MAX_WAIT


def test_backoff_doubles_up_to_its_cap_and_old_tokens_are_not_taken() -> None:
    """60 s, 120 s, ... 900 s; a token older than CLAIM_WITHIN is not handed out."""
    assert [policy.backoff(n) for n in range(6)] == [60, 120, 240, 480, 900, 900]
    assert policy.backoff(1, 3.0) == 6.0 and policy.backoff(9, 3.0) == 45.0
    assert policy.usable(policy.CLAIM_WITHIN) and not policy.usable(policy.CLAIM_WITHIN + 1)
    assert policy.solve_estimate([]) == policy.DEFAULT_SOLVE_SECONDS
    assert policy.solve_estimate([4.0, 40.0, 5.0]) == 5.0


# -- asking ahead ---------------------------------------------------------------------------


def test_nothing_is_asked_before_the_page_taught_the_site_key(service: SolvingService) -> None:
    """A fresh deployment: lookups due, but no site key yet: no solve is paid for nothing;
    the first attempt defers (uncharged) and its page teaches the key."""
    (lookup_id,) = _due(1)
    filler.fill()
    assert service.ledger().created == 0
    held = pool.take(lookup_id, 1)
    assert isinstance(held, Held) and held.pool and not held.token
    with pytest.raises(NoTokenHeld, match="learns its site key"):
        held.hand_over(SITE_KEY)
    held.seen = (SITE_KEY, PAGE_URL)
    pool.settle(held, LookupResult(outcome=Outcome.DEFERRED, meta={"sent": False}))
    row = breaker.service_row()
    assert row is not None and (row.site_key, row.page_url) == (SITE_KEY, PAGE_URL)


def test_the_pool_asks_as_many_solves_as_lookups_are_due(service: SolvingService) -> None:
    """Three lookups due, depth 7 (30 s solves, 5 s rate): three solves, for the page's key;
    the next rounds collect them (paid) and ask no more."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    _due(3)
    _fill_until_ready(3)
    filler.fill()
    ledger = service.ledger()
    assert ledger.created == 3 and ledger.paid == 3
    assert {task.site_key for task in ledger.tasks} == {SITE_KEY}
    assert {task.page_url for task in ledger.tasks} == {PAGE_URL}
    assert pool.ledger()["ready"] == 3


def test_a_flood_of_unverified_lookups_asks_no_solve_while_members_wait(
    service: SolvingService, settings: Any
) -> None:
    """Unverified lookups run only in spare capacity: with 2 members due and 5 unverified
    sign-ups queued the pool (7 deep before any solve is timed) asks 2 solves; once no
    member is due, the unverified ones are the demand."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    members = _due(2)
    settings.CENSUS_IS_VERIFIED = "tests.unit.test_shares.never_verified"
    _due(5)
    _fill_until_ready(2)
    filler.fill()
    assert service.ledger().created == 2
    CedulaInfo.objects.filter(pk__in=members).update(status=Status.FOUND)
    CaptchaToken.objects.filter(state=State.READY).update(state=State.USED)  # members took them
    filler.fill()
    assert service.ledger().created > 2


def test_the_pool_is_never_deeper_than_the_gate_can_spend(service: SolvingService) -> None:
    """Twenty lookups due at one consulta per 5 s and 30 s solves: 7 solves in flight."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    _due(20)
    filler.fill()
    filler.fill()
    assert service.ledger().created == policy.depth(policy.DEFAULT_SOLVE_SECONDS, 5.0) == 7


def test_no_solve_is_asked_while_census_is_paused(service: SolvingService) -> None:
    """census_pause holds every lookup: a token asked now would age out unused."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    _due(2)
    pause.pause(by="test")
    filler.fill()
    assert service.ledger().created == 0
    pause.resume(by="test")
    filler.fill()
    assert service.ledger().created == 2


def test_the_daily_limit_caps_the_solves_and_then_lookups_wait_for_tomorrow(
    service: SolvingService, settings: Any
) -> None:
    """CENSUS_CAPTCHA_DAILY_LIMIT 2 with five due: two asked; once both are taken, the next
    lookup waits for the next day, uncharged (captcha_service: daily_limit)."""
    settings.CENSUS_CAPTCHA_DAILY_LIMIT = 2
    breaker.learn_page(SITE_KEY, PAGE_URL)
    ids = _due(5)
    _fill_until_ready(2)
    assert service.ledger().created == 2
    assert all(isinstance(pool.take(i, 1), Held) for i in ids[:2])
    waits = pool.take(ids[2], 1)
    assert isinstance(waits, LookupResult) and waits.outcome is Outcome.DEFERRED
    assert waits.detail.startswith("captcha_service: daily_limit")
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0) + timedelta(days=1)
    assert waits.retry_after == pytest.approx((midnight - timezone.now()).total_seconds(), abs=5)


# -- taking and settling --------------------------------------------------------------------


def test_an_attempt_takes_a_ready_token_once_and_a_second_waits(service: SolvingService) -> None:
    """One token ready, two lookups: the first holds it (the page gets it, with its use-by);
    the second waits for a solve, uncharged and off the gate's line (captcha_token)."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    first, second = _due(2)
    CedulaInfo.objects.filter(pk=second).update(status=Status.SCRAPING)  # only one is due
    _fill_until_ready(1)
    held = pool.take(first, 1)
    assert isinstance(held, Held) and held.token
    token = held.hand_over(SITE_KEY)
    assert token == held.token and token.use_by is not None
    waits = pool.take(second, 1)
    assert isinstance(waits, LookupResult) and waits.outcome is Outcome.DEFERRED
    assert waits.detail.startswith("captcha_token: waiting for a solved token")
    assert waits.meta == {"sent": False}


def test_a_sent_token_is_used_and_an_unsent_one_goes_back_to_the_pool(
    service: SolvingService,
) -> None:
    """The page sent it: used (and emptied). The attempt ended before its submit: the next
    lookup takes the same token; nothing more is paid."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    first, second = _due(2)
    CedulaInfo.objects.filter(pk=second).update(status=Status.SCRAPING)
    _fill_until_ready(1)
    held = pool.take(first, 1)
    assert isinstance(held, Held)
    pool.settle(held, LookupResult(outcome=Outcome.TIMEOUT, meta={"sent": False}))
    again = pool.take(second, 1)
    assert isinstance(again, Held) and again.row_id == held.row_id
    again.hand_over(SITE_KEY)
    again.sent = True
    pool.settle(again, LookupResult(outcome=Outcome.FOUND))
    row = CaptchaToken.objects.get(pk=held.row_id)
    assert (row.state, row.token, row.lookup_id) == (State.USED, "", second)
    assert service.ledger().paid == 1


def test_a_token_the_site_refused_is_counted_as_refused(service: SolvingService) -> None:
    """Sent and answered with a captcha error: used, and refused (the site's answer)."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    (lookup_id,) = _due(1)
    _fill_until_ready(1)
    held = pool.take(lookup_id, 1)
    assert isinstance(held, Held)
    held.hand_over(SITE_KEY)
    held.sent = True
    pool.settle(held, LookupResult(outcome=Outcome.CAPTCHA_FAILED, meta={"sent": True}))
    assert pool.ledger()["refused"] == 1


def test_a_token_too_old_to_take_is_wasted_and_counted(service: SolvingService) -> None:
    """Ready longer than CLAIM_WITHIN: no attempt gets it; the next round counts it wasted."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    (lookup_id,) = _due(1)
    _fill_until_ready(1)
    old = timezone.now() - timedelta(seconds=policy.CLAIM_WITHIN + 1)
    CaptchaToken.objects.update(solved_at=old)
    CedulaInfo.objects.filter(pk=lookup_id).update(status=Status.SCRAPING)  # none due now
    waits = pool.take(lookup_id, 1)
    assert isinstance(waits, LookupResult)
    filler.fill()
    assert pool.ledger()["wasted"] == 1
    assert CaptchaToken.objects.get().token == ""


def test_a_page_with_another_site_key_gets_no_token(service: SolvingService) -> None:
    """The site changed its key: the held token is not sent (it would be refused, paid);
    the lookup waits; the pool learns the new key."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    (lookup_id,) = _due(1)
    _fill_until_ready(1)
    held = pool.take(lookup_id, 1)
    assert isinstance(held, Held)
    with pytest.raises(NoTokenHeld, match="another site key") as refused:
        held.hand_over("6LcAnotherKey")
    assert refused.value.defer_reason == "captcha_token"
    held.seen = ("6LcAnotherKey", PAGE_URL)
    pool.settle(held, LookupResult(outcome=Outcome.DEFERRED, meta={"sent": False}))
    assert breaker.service_row().site_key == "6LcAnotherKey"  # type: ignore[union-attr]


# -- the service's breaker ------------------------------------------------------------------


def test_a_service_without_balance_pauses_the_pool_and_its_probe_resumes_it(
    service: SolvingService,
) -> None:
    """Zero balance: the first ask pauses the service for everyone (a lookup waits,
    captcha_service, uncharged); no more tasks are asked; once its backoff has passed, a
    free getBalance probe finds money again and the pool asks."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    (lookup_id,) = _due(1)
    service.balance = 0
    filler.fill()
    row = breaker.service_row()
    assert row is not None and row.open_until is not None and row.reason == "zero_balance"
    waits = pool.take(lookup_id, 1)
    assert isinstance(waits, LookupResult) and waits.outcome is Outcome.DEFERRED
    assert waits.detail.startswith("captcha_service: zero_balance")
    filler.fill()
    assert service.ledger().calls.get("createTask", 0) == 1  # paused: nothing asked
    # The backoff passes, still no money: the probe fails and the backoff doubles.
    CaptchaService.objects.update(open_until=timezone.now() - timedelta(seconds=1))
    filler.fill()
    row.refresh_from_db()
    assert row.failures == 1 and row.open_until is not None
    assert service.ledger().calls.get("createTask", 0) == 1
    service.balance = 10
    CaptchaService.objects.update(open_until=timezone.now() - timedelta(seconds=1))
    _fill_until_ready(1)
    row.refresh_from_db()
    assert row.open_until is None and row.failures == 0
    assert isinstance(pool.take(lookup_id, 1), Held)


def test_a_service_failure_inside_an_attempt_pauses_it_for_everyone(
    service: SolvingService,
) -> None:
    """With the pool off, an attempt's solve that finds the service down pauses it on the
    shared row: the next lookup of any host waits without asking."""
    (lookup_id,) = _due(1)
    held = Held(lookup_id, 1, pool=False, service_failure="unreachable")
    pool.settle(held, LookupResult(outcome=Outcome.DEFERRED, meta={"sent": False}))
    row = breaker.service_row()
    assert row is not None and row.reason == "unreachable" and row.open_until is not None
    waits = pool.take(lookup_id, 2)
    assert isinstance(waits, LookupResult) and waits.detail.startswith("captcha_service")


def test_a_waiting_lookup_looks_again_soon_until_a_solve_time_is_known(
    service: SolvingService, settings: Any
) -> None:
    """No solve seen yet: the 30 s guess is not trusted, the lookup looks again within
    FIRST_LOOK; once solves were seen, it waits for its place in line by their median."""
    settings.CENSUS_RATE_LIMIT_SECONDS = 5.0
    breaker.learn_page(SITE_KEY, PAGE_URL)
    first, second = _due(2)
    CedulaInfo.objects.filter(pk=second).update(status=Status.SCRAPING)
    filler.fill()  # one solve asked, none delivered yet
    waits = pool.take(first, 1)
    assert isinstance(waits, LookupResult) and waits.retry_after == policy.FIRST_LOOK
    now = timezone.now()
    CaptchaToken.objects.create(  # a solve seen: 40 s
        state=State.USED,
        asked_at=now - timedelta(seconds=60),
        solved_at=now - timedelta(seconds=20),
    )
    CaptchaToken.objects.filter(state=State.SOLVING).update(asked_at=now)
    waits = pool.take(first, 1)
    assert isinstance(waits, LookupResult)
    assert waits.retry_after == pytest.approx(40.0, abs=2)


def test_no_solve_is_asked_while_the_sites_breaker_holds_past_a_tokens_life(
    service: SolvingService,
) -> None:
    """The site blocked: its breaker is open for 5 minutes, longer than a token may wait;
    no solve is asked until it reopens."""
    from census.gate.waiter import DEFAULT_NAME
    from census.models import RateGate

    breaker.learn_page(SITE_KEY, PAGE_URL)
    _due(2)
    gate = RateGate.objects.create(
        name=DEFAULT_NAME, breaker_until=timezone.now() + timedelta(minutes=5)
    )
    filler.fill()
    assert service.ledger().created == 0
    RateGate.objects.filter(pk=gate.pk).update(breaker_until=timezone.now() + timedelta(seconds=5))
    filler.fill()
    assert service.ledger().created == 2


def _ready_token() -> None:
    now = timezone.now()
    CaptchaToken.objects.create(
        state=State.READY, site_key=SITE_KEY, token="t", asked_at=now, solved_at=now
    )


def _waiting_for_token(lookup_id: int, seconds: float) -> None:
    """The lookup's last attempt waited for a token; its next one is due in ``seconds``."""
    from census.models import Attempt
    from census.q2.queue import schedule_attempt

    due = timezone.now() + timedelta(seconds=seconds)
    CedulaInfo.objects.filter(pk=lookup_id).update(
        status=Status.RETRYING, step=2, next_attempt_at=due
    )
    Attempt.objects.create(
        lookup_id=lookup_id, step=1, outcome="deferred", error="captcha_token: waiting"
    )
    schedule_attempt(lookup_id, 2, due)


def test_a_ready_token_brings_the_longest_waiting_lookup_forward(service: SolvingService) -> None:
    """Two lookups wait for a token (due in 40 s and 50 s) and one is ready: the first comes
    now, row and schedule alike, rather than leave the gate idle; the other keeps its time.
    A token some queued lookup will take brings nobody forward."""
    from django_q.models import Schedule

    from census.q2.queue import task_name

    breaker.learn_page(SITE_KEY, PAGE_URL)
    first, second = _due(2)
    _waiting_for_token(first, 40)
    _waiting_for_token(second, 50)
    _ready_token()
    filler.fill()
    soon = timezone.now() + timedelta(seconds=5)
    rows = {i.pk: i.next_attempt_at for i in CedulaInfo.objects.filter(pk__in=[first, second])}
    assert rows[first] < soon and rows[second] > soon
    assert Schedule.objects.get(name=task_name(first, 2)).next_run < soon
    assert Schedule.objects.get(name=task_name(second, 2)).next_run > soon


def test_a_token_a_queued_lookup_will_take_brings_nobody_forward(service: SolvingService) -> None:
    """One token ready, one lookup queued (pending) and one waiting: the queued one takes
    it; the waiting one keeps its time."""
    breaker.learn_page(SITE_KEY, PAGE_URL)
    waiting, _queued = _due(2)
    _waiting_for_token(waiting, 40)
    _ready_token()
    filler.fill()
    info = CedulaInfo.objects.get(pk=waiting)
    assert info.next_attempt_at > timezone.now() + timedelta(seconds=30)
