"""The ticker's side of the token pool: ask solves ahead, collect them, age them out, and
keep the solving service's breaker. One host at a time (a lease on the ``CaptchaService``
row), every ``ROUND_SECONDS``, on a thread of each qcluster worker that
``census.maintenance.ticker`` starts; no browser, no worker slot.

A round never blocks on a solve: ``createTask`` now, ``getTaskResult`` on later rounds. Every
HTTP call has a short timeout, and a round stops asking once its lease is half spent.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from census import database, events
from census.captcha import policy
from census.captcha.breaker import SERVICE, pause_service, resume_service
from census.captcha.client import SolvingClient
from census.captcha.errors import CaptchaError, CaptchaNotSolved, CaptchaServiceUnavailable
from census.captcha.pool import asked_today, recent_solves
from census.conf import settings
from census.events import Event
from census.gate import pause
from census.gate.shares import WorkClass
from census.gate.waiter import GateWaiter
from census.lookup.status import bring_forward
from census.models import Attempt, CaptchaService, CaptchaToken, CedulaInfo, Status
from census.outcomes import CAPACITY_REASON, CAPTCHA_TOKEN_REASON, Outcome
from census.q2 import queue

State = CaptchaToken.State
#: Seconds between rounds.
ROUND_SECONDS = 1.0
#: Seconds a round's lease lasts (a host that died mid-round holds the pool no longer).
LEASE_SECONDS = 60.0
#: Seconds one HTTP call of a round may take.
CALL_TIMEOUT = 10.0
#: Seconds between polls of one task (the services ask for 3-5 s).
POLL_SECONDS = 3.0
#: Seconds before a task's first poll (2captcha asks for at least 5).
FIRST_POLL_SECONDS = 5.0
#: Seconds: a lookup waiting for a token that is due this soon takes a ready one anyway.
WAKE_SLACK = 2.0
#: Failures of one task's polls that make the service count as down.
_TRANSIENT = frozenset({"unreachable", "timeout", "server_error"})


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def fill() -> bool:
    """One round of the pool, if this process gets the lease; True if it ran."""
    config = settings.captcha
    if config is None:
        return False
    now = database.clock()
    service, _ = CaptchaService.objects.get_or_create(name=SERVICE)
    me = _holder()
    leased = (
        CaptchaService.objects.filter(pk=service.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=LEASE_SECONDS), lease_holder=me)
    )
    if not leased:
        return False
    stop_at = time.monotonic() + LEASE_SECONDS / 2
    try:
        client = SolvingClient.from_config(config, request_timeout=CALL_TIMEOUT)
        _age_out(now)
        service.refresh_from_db()
        until = service.open_until
        if until is not None and (until > now or not _probe(client, service, now)):
            return True
        _poll(client, now, stop_at)
        if settings.captcha_pool:
            _wake()
        if settings.captcha_pool and service.site_key:
            _ask(client, service, now, stop_at)
    finally:
        CaptchaService.objects.filter(pk=service.pk, lease_holder=me).update(lease_until=None)
    return True


# -- the round's parts ------------------------------------------------------------------------


def _age_out(now: datetime) -> None:
    """Tokens too old to take are wasted; solves never delivered are given up."""
    too_old = now - timedelta(seconds=policy.CLAIM_WITHIN)
    for row in CaptchaToken.objects.filter(state=State.READY, solved_at__lt=too_old):
        if _end(row, State.WASTED, now, "aged out in the pool: no lookup took it"):
            events.emit(Event.CAPTCHA_SOLVE_ENDED, token_id=row.pk, outcome="wasted")
    # A held token whose attempt never settled (a killed worker) is past its use.
    dead = now - timedelta(seconds=policy.USE_WITHIN)
    CaptchaToken.objects.filter(state=State.HELD, solved_at__lt=dead).update(
        state=State.WASTED, token="", finished_at=now, error="its attempt never settled"
    )
    given_up = now - timedelta(seconds=policy.SOLVE_GIVE_UP)
    for row in CaptchaToken.objects.filter(state=State.SOLVING, asked_at__lt=given_up):
        if _end(row, State.FAILED, now, "no token within the give-up time"):
            events.emit(Event.CAPTCHA_SOLVE_ENDED, token_id=row.pk, outcome="failed")


def _poll(client: SolvingClient, now: datetime, stop_at: float) -> None:
    due = CaptchaToken.objects.filter(state=State.SOLVING, mode=CaptchaToken.Mode.POOL).filter(
        Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    )
    for row in due.order_by("asked_at"):
        if time.monotonic() > stop_at:
            return
        try:
            token = client.task_result(row.task_id)
        except CaptchaNotSolved as error:
            _end(row, State.FAILED, database.clock(), f"{error.reason}: {error}")
            events.emit(Event.CAPTCHA_SOLVE_ENDED, token_id=row.pk, outcome="failed")
            continue
        except CaptchaServiceUnavailable as error:
            if error.reason in _TRANSIENT:  # the task is asked: keep polling it
                _next_poll(row, now)
                continue
            pause_service(error.reason or "unavailable", now)
            return
        except CaptchaError as error:
            _end(row, State.FAILED, database.clock(), f"{error.reason}: {error}")
            events.emit(Event.CAPTCHA_SOLVE_ENDED, token_id=row.pk, outcome="failed")
            continue
        if token is None:
            _next_poll(row, now)
            continue
        solved = database.clock()
        updated = CaptchaToken.objects.filter(pk=row.pk, state=State.SOLVING).update(
            state=State.READY, token=token, solved_at=solved, next_poll_at=None
        )
        if updated:
            seconds = round((solved - row.asked_at).total_seconds(), 3)
            events.emit(
                Event.CAPTCHA_SOLVE_ENDED, token_id=row.pk, outcome="ready", seconds=seconds
            )


def _ask(client: SolvingClient, service: CaptchaService, now: datetime, stop_at: float) -> None:
    """Ask as many solves as the lookups due can use before their tokens age out."""
    if not _may_ask(now):
        return
    estimate = policy.solve_estimate(recent_solves())
    interval = settings.rate_limit_seconds
    in_flight = CaptchaToken.objects.filter(state__in=(State.SOLVING, State.READY)).count()
    limit = settings.captcha_daily_limit
    daily_left = None if limit is None else limit - asked_today(now)
    count = policy.to_ask(
        due=_lookups_due_by(timezone.now() + timedelta(seconds=estimate + interval)),
        in_flight=in_flight,
        depth=policy.depth(estimate, interval),
        daily_left=daily_left,
    )
    for _ in range(count):
        if time.monotonic() > stop_at:
            return
        try:
            task_id = client.create_task(service.site_key, service.page_url or settings.site_url)
        except CaptchaServiceUnavailable as error:
            pause_service(error.reason or "unavailable", now)
            return
        except CaptchaError as error:  # refused: a setting or the service changed
            pause_service(error.reason or "refused", now)
            return
        asked = database.clock()
        row = CaptchaToken.objects.create(
            service=client.spec.name,
            task_id=str(task_id)[:100],
            site_key=service.site_key,
            page_url=(service.page_url or settings.site_url)[:300],
            asked_at=asked,
            next_poll_at=asked + timedelta(seconds=FIRST_POLL_SECONDS),
        )
        events.emit(Event.CAPTCHA_SOLVE_ASKED, token_id=row.pk)


def _wake() -> None:
    """Tokens ready that no lookup is due to take: the lookups that wait longest for one come
    now, not at the time guessed when they were deferred (the gate would sit idle)."""
    soon = timezone.now() + timedelta(seconds=WAKE_SLACK)
    spare = CaptchaToken.objects.filter(state=State.READY).count() - _lookups_due_by(soon)
    if spare <= 0:
        return
    # Tokens nobody due will take are spare capacity too: lookups waiting for their class's
    # share or for spare capacity (census.gate.shares) may have it; they ask again on waking.
    waited_for_token = Attempt.objects.filter(
        Q(error__startswith=f"{CAPTCHA_TOKEN_REASON}:")
        | Q(error__startswith=f"{CAPACITY_REASON}:"),
        lookup=OuterRef("pk"),
        step=OuterRef("step") - 1,
        outcome=Outcome.DEFERRED.value,
    )
    waiting = (
        CedulaInfo.objects.filter(status=Status.RETRYING, next_attempt_at__gt=soon)
        .filter(Exists(waited_for_token))
        .order_by("next_attempt_at")
        .values_list("pk", "step")[:spare]
    )
    for lookup_id, step in waiting:
        with transaction.atomic():
            now = timezone.now()
            if bring_forward(lookup_id, step, now):
                queue.advance_attempt(lookup_id, step, now)


def _lookups_due_by(when: datetime) -> int:
    """Lookups that will take a token by ``when`` (queued, or retrying by then).

    Unverified registrations take one only while no other lookup is due (they run in spare
    capacity only, ``census.gate.shares``): a flood of them asks for no solve while members
    wait, solves that would age out unused."""
    due = CedulaInfo.objects.filter(
        Q(status=Status.PENDING)
        | Q(status=Status.RETRYING, next_attempt_at__lte=when)
        | Q(status=Status.RETRYING, next_attempt_at__isnull=True)
    )
    verified = due.exclude(work_class=WorkClass.UNVERIFIED).count()
    return verified or due.count()


def _may_ask(now: datetime) -> bool:
    """No solve for a lookup that census's pause or the site's breaker holds past a token's
    life."""
    if pause.current() is not None:
        return False
    state = GateWaiter().state()
    if state.breaker_until is None:
        return True
    return state.breaker_until <= now + timedelta(seconds=policy.CLAIM_WITHIN)


def _probe(client: SolvingClient, service: CaptchaService, now: datetime) -> bool:
    """Ask the paused service for its balance (free): True if it can serve again."""
    try:
        balance = client.balance()
    except CaptchaError as error:
        pause_service(error.reason or "unavailable", now, probe_failed=True)
        return False
    if balance <= 0:
        pause_service("zero_balance", now, probe_failed=True)
        return False
    resume_service(balance)
    return True


def _next_poll(row: CaptchaToken, now: datetime) -> None:
    CaptchaToken.objects.filter(pk=row.pk, state=State.SOLVING).update(
        next_poll_at=now + timedelta(seconds=POLL_SECONDS)
    )


def _end(row: CaptchaToken, state: str, now: datetime, error: str) -> bool:
    return bool(
        CaptchaToken.objects.filter(pk=row.pk, state=row.state).update(
            state=state, token="", finished_at=now, next_poll_at=None, error=error[:300]
        )
    )
