"""The site's capacity shared between work classes: the pure rules (``census.gate.shares``)
and their application before an attempt opens a browser (``census.lookup.capacity``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule
from structlog.testing import capture_logs

from census import mark_verified
from census.events import Event
from census.gate.shares import (
    SPARE_RECHECK_MAX,
    Demand,
    SharePolicy,
    Wait,
    WorkClass,
    share_wait,
)
from census.lookup import capacity
from census.lookup.refresh import start_for_user
from census.models import Attempt, CedulaInfo, Status
from census.q2 import queue
from tests import factories
from tests.driving import run_and_hook

POLICY = SharePolicy(interval=5.0, shares={"refresh": 0.2, "bulk": 0.1})
REG, REFRESH, BULK, UNVERIFIED = (
    WorkClass.REGISTRATION,
    WorkClass.REFRESH,
    WorkClass.BULK,
    WorkClass.UNVERIFIED,
)


def test_a_registration_is_never_held_back() -> None:
    """Registrations are served first: whatever waits, they may go."""
    everything = Demand(waiting={REG: 50, REFRESH: 50, BULK: 50, UNVERIFIED: 50}, used=99)
    assert share_wait(REG, everything, POLICY) is None


def test_refresh_and_bulk_use_all_the_capacity_no_registration_wants() -> None:
    """Work-conserving: with no registration waiting, a refresh or bulk lookup goes however
    much it used."""
    no_registrations = Demand(waiting={REFRESH: 30, BULK: 30, UNVERIFIED: 5}, used=1000)
    assert share_wait(REFRESH, no_registrations, POLICY) is None
    assert share_wait(BULK, no_registrations, POLICY) is None


def test_while_registrations_wait_a_class_gets_its_budget_then_waits_for_the_window() -> None:
    """A share of 0.2 over 20 slots is 4 requests per 100 s; the fifth waits until the oldest
    counted one leaves the window."""
    assert (POLICY.window, POLICY.budget(REFRESH), POLICY.budget(BULK)) == (100.0, 4, 2)
    assert share_wait(REFRESH, Demand(waiting={REG: 1}, used=3, oldest_age=10), POLICY) is None
    wait = share_wait(REFRESH, Demand(waiting={REG: 1}, used=4, oldest_age=30), POLICY)
    assert isinstance(wait, Wait) and wait.seconds == 70.0
    assert wait.why.startswith("refresh: share used (4 of 4 per 100 s)")


def test_over_a_long_busy_spell_each_class_gets_no_more_than_its_share() -> None:
    """Simulated slot by slot with registrations, refreshes and bulk always waiting: refresh
    and bulk each get at most their share of the sends, registrations the rest."""
    sends: list[tuple[float, WorkClass]] = []
    for slot in range(400):
        now = slot * POLICY.interval
        for cls in (REFRESH, BULK, REG):  # the lower classes ask first: the worst case
            recent = [t for t, c in sends if c is cls and now - t < POLICY.window]
            demand = Demand(
                waiting={REG: 5},
                used=len(recent),
                oldest_age=now - min(recent) if recent else None,
            )
            if share_wait(cls, demand, POLICY) is None:
                sends.append((now, cls))
                break
    counts = {cls: sum(c is cls for _, c in sends) for cls in (REG, REFRESH, BULK)}
    assert counts[REFRESH] <= 0.2 * 400 + POLICY.budget(REFRESH)
    assert counts[BULK] <= 0.1 * 400 + POLICY.budget(BULK)
    assert counts[REG] >= 400 - counts[REFRESH] - counts[BULK]
    assert counts[REFRESH] >= 0.2 * 400 - POLICY.budget(REFRESH)  # and it gets its share


def test_an_unverified_lookup_runs_only_when_nothing_else_waits() -> None:
    """Spare capacity only: any verified lookup waiting holds it back, for a while that
    grows with the queue and is bounded."""
    assert share_wait(UNVERIFIED, Demand(waiting={UNVERIFIED: 40}), POLICY) is None
    held = share_wait(UNVERIFIED, Demand(waiting={BULK: 1, UNVERIFIED: 3}), POLICY)
    assert isinstance(held, Wait) and held.seconds == 20.0
    assert held.why == "unverified: 1 verified lookup(s) waiting"
    flood = share_wait(UNVERIFIED, Demand(waiting={REG: 1, UNVERIFIED: 10_000}), POLICY)
    assert flood is not None and flood.seconds == SPARE_RECHECK_MAX


def test_no_rate_limit_means_nothing_to_share() -> None:
    """Without a limit between requests there is no capacity to divide."""
    free = SharePolicy(interval=0.0, shares={"refresh": 0.0})
    assert share_wait(REFRESH, Demand(waiting={REG: 9}, used=9), free) is None
    assert share_wait(UNVERIFIED, Demand(waiting={REG: 9}), free) is None


# -- applied to lookups -----------------------------------------------------------------------


def never_verified(user: Any) -> bool:
    """A portal's ``CENSUS_IS_VERIFIED`` that verifies nobody at registration."""
    return False


def _lookup_of(django_capture_on_commit_callbacks: Any, **fields: Any) -> CedulaInfo:
    with django_capture_on_commit_callbacks(execute=True):
        user = factories.member()
    info = CedulaInfo.objects.get(user=user)
    if fields:
        CedulaInfo.objects.filter(pk=info.pk).update(**fields)
        info.refresh_from_db()
    return info


@pytest.mark.django_db
def test_a_refresh_past_its_share_waits_uncharged_while_a_registration_waits(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """A refresh whose class used its share while a registration is queued sends nothing:
    deferred with ``capacity:``, no retry charged, no place on the gate's cursor, and not
    bounded by ``CENSUS_MAX_DEFER_SECONDS``. Once no registration waits it runs."""
    settings.CENSUS_RATE_LIMIT_SECONDS = 5
    settings.CENSUS_CAPACITY_SHARES = {"refresh": 0.05}  # 1 request per 100 s
    settings.CENSUS_MAX_DEFER_SECONDS = 1
    earlier = _lookup_of(django_capture_on_commit_callbacks, status=Status.FOUND)
    Attempt.objects.create(lookup=earlier, step=1, work_class="refresh", sent=True)
    refresh = _lookup_of(django_capture_on_commit_callbacks, work_class="refresh")
    registration = _lookup_of(django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(refresh.pk, refresh.step)
    refresh.refresh_from_db()
    row = Attempt.objects.get(lookup=refresh, step=1)
    assert (row.outcome, row.sent, row.work_class) == ("deferred", False, "refresh")
    assert row.error.startswith("capacity: refresh: share used (1 of 1 per 100 s)")
    assert (refresh.status, refresh.retry_count, refresh.ticketed) == (Status.RETRYING, 0, False)
    assert refresh.deferred_s == 0.0
    assert row.retry_after is not None and 80 <= row.retry_after <= 121  # 100 s - age, jittered
    CedulaInfo.objects.filter(pk=registration.pk).update(status=Status.FOUND)
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(refresh.pk, refresh.step)
    refresh.refresh_from_db()
    assert refresh.status == Status.FOUND


@pytest.mark.django_db
def test_an_unverified_registration_waits_for_spare_capacity_until_verified(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """``CENSUS_IS_VERIFIED`` False: the lookup is ``unverified`` and waits while a verified
    one is queued; ``census.mark_verified`` makes it a registration and brings its attempt
    (row and schedule) forward to now."""
    settings.CENSUS_RATE_LIMIT_SECONDS = 5
    _lookup_of(django_capture_on_commit_callbacks)  # a verified member, queued
    settings.CENSUS_IS_VERIFIED = "tests.unit.test_shares.never_verified"
    unverified = _lookup_of(django_capture_on_commit_callbacks)
    assert unverified.work_class == "unverified"
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(unverified.pk, unverified.step)
    unverified.refresh_from_db()
    row = Attempt.objects.get(lookup=unverified, step=1)
    assert row.error == "capacity: unverified: 1 verified lookup(s) waiting"
    assert row.retry_after is not None and 5 <= row.retry_after <= 6  # the interval, jittered
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        assert mark_verified(unverified.user) is True
    unverified.refresh_from_db()
    now = timezone.now()
    assert unverified.work_class == "registration"
    assert unverified.next_attempt_at <= now
    schedule = Schedule.objects.get(name=queue.task_name(unverified.pk, unverified.step))
    assert schedule.next_run <= now
    assert [e["event"] for e in logs] == [Event.LOOKUP_VERIFIED]
    assert mark_verified(unverified.user) is False  # once
    with django_capture_on_commit_callbacks(execute=True):
        run_and_hook(unverified.pk, unverified.step)
    unverified.refresh_from_db()
    assert unverified.status == Status.FOUND


@pytest.mark.django_db
def test_each_door_starts_a_budget_of_its_class(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A registration is ``registration``; a bulk run's first lookup and its fresh budget are
    ``bulk``, with who asked (a leader's refresh is ``refresh``: tests/unit/test_refresh.py)."""
    registered = _lookup_of(django_capture_on_commit_callbacks)
    assert (registered.work_class, registered.requested_by_id) == ("registration", None)
    operator = factories.leader()
    newcomer = factories.member_without_lookup()
    with django_capture_on_commit_callbacks(execute=True):
        assert start_for_user(newcomer, requester_id=operator.pk)
    created = CedulaInfo.objects.get(user=newcomer)
    assert (created.work_class, created.requested_by_id) == ("bulk", operator.pk)
    CedulaInfo.objects.filter(pk=registered.pk).update(status=Status.FOUND)
    with django_capture_on_commit_callbacks(execute=True):
        assert start_for_user(registered.user, requester_id=operator.pk)
    registered.refresh_from_db()
    assert (registered.work_class, registered.status) == ("bulk", Status.PENDING)


@pytest.mark.django_db
def test_the_queues_name_each_class_with_its_share(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """``capacity.queues``: what waits per class, what it sent in the last hour, its share."""
    settings.CENSUS_CAPACITY_SHARES = {"refresh": 0.25, "bulk": 0.1}
    _lookup_of(django_capture_on_commit_callbacks)
    sent = _lookup_of(django_capture_on_commit_callbacks, work_class="bulk", status=Status.FOUND)
    Attempt.objects.create(
        lookup=sent, step=1, work_class="bulk", sent=True, sent_at=timezone.now()
    )
    by_class = {q.work_class: q for q in capacity.queues()}
    assert [(q.waiting, q.sent_last_hour, q.share) for q in by_class.values()] == [
        (1, 0, None),
        (0, 0, 0.25),
        (0, 1, 0.1),
        (0, 0, 0.0),
    ]


@pytest.mark.django_db
def test_a_member_verified_while_their_attempt_decides_to_wait_comes_back_at_once(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """``mark_verified`` lands after the attempt chose to wait for spare capacity but before
    its hook concluded it (the lookup is still ``scraping``, nothing to bring forward): the
    deferral is then due now, not after the unverified wait."""
    from django_q.models import Task

    from census.lookup import attempt as attempt_task
    from census.q2 import hooks

    settings.CENSUS_RATE_LIMIT_SECONDS = 5
    _lookup_of(django_capture_on_commit_callbacks)  # a verified member, queued
    settings.CENSUS_IS_VERIFIED = "tests.unit.test_shares.never_verified"
    info = _lookup_of(django_capture_on_commit_callbacks)
    task = Task(id="t-verified", name="x", func=queue.TASK_FUNC, args=(info.pk, info.step))
    attempt_task.current_task_id.set(task.id)
    task.result = attempt_task.run_attempt(info.pk, info.step)
    task.success, task.started, task.stopped = True, timezone.now(), timezone.now()
    assert CedulaInfo.objects.get(pk=info.pk).status == Status.SCRAPING
    with django_capture_on_commit_callbacks(execute=True):
        assert mark_verified(info.user) is True
        hooks.attempt_finished(task)
    info.refresh_from_db()
    assert Attempt.objects.get(lookup=info, step=1).error.startswith("capacity: unverified")
    assert (info.status, info.work_class) == (Status.RETRYING, "registration")
    assert info.next_attempt_at <= timezone.now()
