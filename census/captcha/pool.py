"""The attempt's side of the token pool: take a solved token before the browser opens, hand it
to the page, and settle what became of it once the attempt has ended.

``census.captcha.filler`` asks the solves ahead (the ticker's side); this module takes them.
Every write happens on the attempt's own thread, before and after the scrape: the page's
thread (``census.captcha.solver``, called by the scraper) only reads the ``Held`` it was given.

A lookup that finds no token ready sends nothing and waits, uncharged
(``captcha_token: ...``), until one is likely there; one whose solving service is paused
waits for it (``captcha_service: ...``). With the pool on, no solve ever runs inside an
attempt: the first attempt of a fresh deployment loads the page once to learn its site key.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone

from census import database, events
from census.captcha import breaker, policy
from census.captcha.breaker import SERVICE
from census.captcha.errors import CaptchaError
from census.conf import SERVICE_SOLVER, settings
from census.events import Event
from census.models import CaptchaService, CaptchaToken, CedulaInfo, Status
from census.outcomes import (
    CAPTCHA_SERVICE_REASON,
    CAPTCHA_TOKEN_REASON,
    DAILY_LIMIT_REASON,
    Outcome,
)
from census.scraper.base import LookupResult

State = CaptchaToken.State
#: Seconds a lookup waits when the pool's database did not answer.
DATABASE_WAIT = 15.0


class Token(str):
    """A token that knows when it must have left (``use_by``, on ``time.monotonic()``)."""

    use_by: float | None = None

    def __new__(cls, value: str, use_by: float | None = None) -> Token:
        token = super().__new__(cls, value)
        token.use_by = use_by
        return token


class NoTokenHeld(CaptchaError):
    """The attempt holds no usable token (the pool is learning the site key, the page shows
    another key, or the token aged out): the lookup waits for one, uncharged."""

    defer_reason = CAPTCHA_TOKEN_REASON

    def __init__(self, message: str, *, reason: str, defer_seconds: float) -> None:
        super().__init__(message, reason=reason)
        self.defer_seconds = defer_seconds


@dataclass
class Solved:
    """A solve that ran inside the attempt (no pool): recorded when the attempt ends."""

    service: str
    asked: datetime
    solved: datetime
    site_key: str
    page_url: str


@dataclass
class Held:
    """What one attempt holds of the pool, and what its page taught it."""

    lookup_id: int
    step: int
    #: Tokens come from the pool (never solved in the attempt).
    pool: bool
    row_id: int | None = None
    token: str = ""
    site_key: str = ""
    solved_at: datetime | None = None
    use_by: float | None = None
    #: The page's site key and URL, as the solver was called with them.
    seen: tuple[str, str] | None = None
    handed: bool = False
    sent: bool = False
    solved_here: list[Solved] = field(default_factory=list)
    #: The reason of a ``CaptchaServiceUnavailable`` the solver met, if any.
    service_failure: str = ""

    def hand_over(self, site_key: str) -> Token:
        """The held token for a page with ``site_key``; ``NoTokenHeld`` when there is none
        to give."""
        if not self.token:
            raise NoTokenHeld(
                "no token was asked for this page yet: the pool learns its site key",
                reason="learning_site_key",
                defer_seconds=policy.FIRST_LOOK,
            )
        if site_key and site_key != self.site_key:
            raise NoTokenHeld(
                "the page shows another site key than the pool's",
                reason="site_key_changed",
                defer_seconds=policy.DEFAULT_SOLVE_SECONDS,
            )
        if self.use_by is not None and time.monotonic() >= self.use_by:
            raise NoTokenHeld(
                "the token aged out before its page was ready",
                reason="aged",
                defer_seconds=policy.MIN_WAIT,
            )
        self.handed = True
        return Token(self.token, self.use_by)


_held: contextvars.ContextVar[Held | None] = contextvars.ContextVar("census_captcha_held")


def held() -> Held | None:
    """What the running attempt holds (None outside an attempt)."""
    return _held.get(None)


@contextlib.contextmanager
def holding(held: Held) -> Iterator[Held]:
    """Make ``held`` the running attempt's (its page thread copies the context)."""
    reset = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(reset)


# -- before the attempt ---------------------------------------------------------------------


def take(lookup_id: int, step: int) -> Held | LookupResult:
    """A token for this attempt, or why it waits (a deferral: nothing sent, not charged).

    Only for ``CENSUS_CAPTCHA``'s service: a ``CENSUS_CAPTCHA_SOLVER`` callable is left
    alone. With the pool off the attempt solves for itself, unless the service is paused or
    the day's solves are spent."""
    if settings.solver_path != SERVICE_SOLVER:
        return Held(lookup_id, step, pool=False)
    try:
        return database.retrying(lambda: _take(lookup_id, step), operation="captcha_take")
    except Exception as error:  # the database is away: nothing was sent, look again soon
        why = f"the pool's database did not answer ({type(error).__name__})"
        return _wait(CAPTCHA_TOKEN_REASON, why, DATABASE_WAIT)


def _take(lookup_id: int, step: int) -> Held | LookupResult:
    now = database.clock()
    service = CaptchaService.objects.filter(name=SERVICE).first()
    if service is not None and service.open_until is not None and service.open_until > now:
        wait = (service.open_until - now).total_seconds()
        return _wait(
            CAPTCHA_SERVICE_REASON,
            f"{service.reason or 'unavailable'}: the solving service is paused",
            wait,
        )
    if not settings.captcha_pool:
        return _spent_today(now) or Held(lookup_id, step, pool=False)
    if service is None or not service.site_key:
        return Held(lookup_id, step, pool=True)  # the page teaches the pool its site key
    held = _claim(lookup_id, step, service.site_key, now)
    if held is not None:
        return held
    spent = _spent_today(now)
    if spent is not None:
        return spent
    wait, in_flight = _expected_wait(lookup_id, now)
    return _wait(
        CAPTCHA_TOKEN_REASON, f"waiting for a solved token ({in_flight} being solved)", wait
    )


def _spent_today(now: datetime) -> LookupResult | None:
    """The wait for the next day when CENSUS_CAPTCHA_DAILY_LIMIT's solves are spent."""
    limit = settings.captcha_daily_limit
    if limit is None or asked_today(now) < limit:
        return None
    wait = (_next_midnight(now) - now).total_seconds()
    why = f"{DAILY_LIMIT_REASON}: CENSUS_CAPTCHA_DAILY_LIMIT reached"
    return _wait(CAPTCHA_SERVICE_REASON, why, wait)


def _claim(lookup_id: int, step: int, site_key: str, now: datetime) -> Held | None:
    """Take the oldest usable ready token (another host may take it first: try the next)."""
    oldest = now - timedelta(seconds=policy.CLAIM_WITHIN)
    candidates = CaptchaToken.objects.filter(
        state=State.READY, site_key=site_key, solved_at__gte=oldest
    ).order_by("solved_at")
    for row in candidates.only("pk", "solved_at")[:5]:
        taken = CaptchaToken.objects.filter(pk=row.pk, state=State.READY).update(
            state=State.HELD, held_at=now, lookup_id=lookup_id, step=step
        )
        if not taken:
            continue
        token = CaptchaToken.objects.get(pk=row.pk)
        assert token.solved_at is not None
        age = (now - token.solved_at).total_seconds()
        return Held(
            lookup_id,
            step,
            pool=True,
            row_id=token.pk,
            token=token.token,
            site_key=token.site_key,
            solved_at=token.solved_at,
            use_by=time.monotonic() + policy.USE_WITHIN - age,
        )
    return None


def _expected_wait(lookup_id: int, now: datetime) -> tuple[float, int]:
    """Seconds until a token is likely there for this lookup, and the solves in flight."""
    solving = list(
        CaptchaToken.objects.filter(state=State.SOLVING).values_list("asked_at", flat=True)
    )
    samples = recent_solves()
    estimate = policy.solve_estimate(samples)
    ready_in = [estimate - (now - asked).total_seconds() for asked in solving]
    # Lookups already waiting (deferred, due soon) go first.
    horizon = now + timedelta(seconds=policy.MAX_WAIT)
    waiting = (
        CedulaInfo.objects.filter(
            status=Status.RETRYING, next_attempt_at__gt=timezone.now(), next_attempt_at__lte=horizon
        )
        .exclude(pk=lookup_id)
        .count()
    )
    wait = policy.wait_for_token(
        waiting, ready_in, solve_seconds=estimate, interval=settings.rate_limit_seconds
    )
    if not samples:  # no solve seen yet: look again sooner than a guess of the solve time
        wait = min(wait, policy.FIRST_LOOK)
    return wait, len(solving)


def _wait(reason: str, why: str, seconds: float) -> LookupResult:
    return LookupResult(
        outcome=Outcome.DEFERRED,
        detail=f"{reason}: {why}",
        retry_after=max(seconds, policy.MIN_WAIT),
        meta={"sent": False},
    )


# -- after the attempt ----------------------------------------------------------------------


def settle(held: Held, result: LookupResult | None) -> None:
    """Record what became of the attempt's token (and what its page taught the pool)."""
    if held.row_id is None and not held.solved_here and not held.seen and not held.service_failure:
        return
    try:
        database.retrying(lambda: _settle(held, result), operation="captcha_settle")
    except Exception:  # never costs the attempt its report; a held token is aged out later
        events.emit(Event.CAPTCHA_SETTLE_FAILED, token_id=held.row_id)


def _settle(held: Held, result: LookupResult | None) -> None:
    now = database.clock()
    sent = held.sent or (result is not None and result.meta.get("sent") is True)
    refused = sent and result is not None and result.outcome is Outcome.CAPTCHA_FAILED
    if held.row_id is not None:
        _settle_pooled(held, now, sent=sent and held.handed, refused=refused)
    for solve in held.solved_here:
        row = CaptchaToken.objects.create(
            mode=CaptchaToken.Mode.ATTEMPT,
            service=solve.service,
            site_key=solve.site_key,
            page_url=solve.page_url[:300],
            asked_at=solve.asked,
            solved_at=solve.solved,
            lookup_id=held.lookup_id,
            step=held.step,
            state=State.USED if sent else State.WASTED,
            refused=refused,
            finished_at=now,
            error="" if sent else "solved inside an attempt that sent nothing",
        )
        _counted(row)
    if held.seen is not None:
        breaker.learn_page(*held.seen)
    if held.service_failure:
        breaker.pause_service(held.service_failure, now)


def _settle_pooled(held: Held, now: datetime, *, sent: bool, refused: bool) -> None:
    assert held.row_id is not None
    rows = CaptchaToken.objects.filter(pk=held.row_id, state=State.HELD, lookup_id=held.lookup_id)
    if sent:
        rows.update(state=State.USED, token="", finished_at=now, refused=refused)
        outcome = "refused" if refused else "used"
    elif held.solved_at is not None and policy.usable((now - held.solved_at).total_seconds()):
        # Never sent, still young: the next lookup takes it.
        rows.update(state=State.READY, held_at=None)
        outcome = "returned"
    else:
        rows.update(
            state=State.WASTED,
            token="",
            finished_at=now,
            error="aged out in an attempt that did not send it",
        )
        outcome = "wasted"
    events.emit(Event.CAPTCHA_TOKEN_SETTLED, token_id=held.row_id, outcome=outcome)


def _counted(row: CaptchaToken) -> None:
    events.emit(Event.CAPTCHA_TOKEN_SETTLED, token_id=row.pk, outcome=row.state, mode=row.mode)


# -- reads ------------------------------------------------------------------------------------


def recent_solves() -> list[float]:
    """Seconds the last solves asked ahead took (newest first; empty before any)."""
    recent = (
        CaptchaToken.objects.filter(mode=CaptchaToken.Mode.POOL, solved_at__isnull=False)
        .order_by("-solved_at")
        .values_list("asked_at", "solved_at")[: policy.SAMPLES]
    )
    return [(solved - asked).total_seconds() for asked, solved in recent if solved is not None]


def _local_midnight(now: datetime) -> datetime:
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_midnight(now: datetime) -> datetime:
    return _local_midnight(now) + timedelta(days=1)


def asked_today(now: datetime) -> int:
    """Solves asked since the server's local midnight, but those never delivered."""
    return (
        CaptchaToken.objects.filter(asked_at__gte=_local_midnight(now))
        .exclude(state=State.FAILED)
        .count()
    )


def ledger(since: datetime | None = None) -> dict[str, int]:
    """Solves by what became of them: ``asked``, ``paid`` (delivered), ``used`` (went out),
    ``refused`` (went out, the site said no), ``wasted`` (paid, never sent), ``failed`` (not
    delivered, not paid), ``solving``, ``ready``, ``held``."""
    rows = CaptchaToken.objects.all()
    if since is not None:
        rows = rows.filter(asked_at__gte=since)
    counts = {state.value: 0 for state in State}
    for state, count in rows.values_list("state").annotate(n=Count("pk")).values_list("state", "n"):
        counts[state] = count
    refused = rows.filter(state=State.USED, refused=True).count()
    asked = sum(counts.values())
    paid = asked - counts[State.SOLVING] - counts[State.FAILED]
    return {"asked": asked, "paid": paid, "refused": refused, **counts}


def per_lookup(since: datetime | None = None) -> float | None:
    """Paid solves per lookup that used one (None before any)."""
    rows = CaptchaToken.objects.exclude(state__in=(State.SOLVING, State.FAILED))
    if since is not None:
        rows = rows.filter(asked_at__gte=since)
    lookups = rows.filter(lookup__isnull=False).values("lookup").distinct().count()
    return None if not lookups else rows.count() / lookups


__all__ = [
    "Held",
    "NoTokenHeld",
    "Solved",
    "Token",
    "asked_today",
    "held",
    "holding",
    "ledger",
    "recent_solves",
    "per_lookup",
    "settle",
    "take",
]
