"""census.lookup.refresh: a leader's manual refresh, driven in-process."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings
from structlog.testing import capture_logs

from census.events import Event
from census.lookup import refresh
from census.models import Status
from tests import factories
from tests.driving import clear_queue, drive, queued

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _census_default_refresh_rule(settings: Any) -> None:
    """census's own ``CENSUS_CAN_REFRESH`` (any leader, any lookup); the portal's referral
    rule is set by the tests that show it. No cooldown: these tests refresh lookups that
    have just ended; the cooldown's own tests set it."""
    settings.CENSUS_CAN_REFRESH = "census.lookup.refresh.can_refresh"
    settings.CENSUS_REFRESH_COOLDOWN = 0


def test_leader_refresh_starts_a_fresh_budget(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A leader's refresh of a finished lookup queues a new step with no retries yet."""
    info = drive(
        new_lookup("timeout", "timeout", "timeout", "found"), django_capture_on_commit_callbacks
    )
    assert info.status == Status.ERROR
    leader = factories.leader()
    clear_queue()
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        assert refresh.request_refresh(info, requested_by=leader) is True
    info.refresh_from_db()
    assert (info.status, info.retry_count, info.step) == (Status.PENDING, 0, 4)
    assert [p["args"] for p in queued()] == [(info.pk, 4)]
    assert Event.REFRESH_REQUESTED in [e["event"] for e in logs]
    info = drive(info, django_capture_on_commit_callbacks)
    assert info.status == Status.FOUND and info.raw_response == ""


def test_permission_holder_may_refresh(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The default rule admits users with census.refresh_cedulainfo."""
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    with override_settings(CENSUS_IS_LEADER="census.permissions.is_leader"):
        assert refresh.request_refresh(info, requested_by=factories.permission_holder())
        with pytest.raises(PermissionDenied):
            refresh.request_refresh(info, requested_by=factories.leader())


def test_non_leader_refresh_is_denied_and_logged(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A member's refresh raises PermissionDenied, queues nothing and emits refresh_denied."""
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    member = factories.member()
    clear_queue()
    with capture_logs() as logs, pytest.raises(PermissionDenied):
        refresh.request_refresh(info, requested_by=member)
    assert [e["event"] for e in logs] == [Event.REFRESH_DENIED]
    assert queued() == []
    info.refresh_from_db()
    assert info.status == Status.FOUND


def test_refresh_in_flight_is_refused(new_lookup: Any) -> None:
    """A lookup still pending is not queued twice."""
    info = new_lookup("found")
    leader = factories.leader()
    with capture_logs() as logs:
        assert refresh.request_refresh(info, requested_by=leader) is False
    assert [p["args"] for p in queued()] == [(info.pk, 1)]
    assert [e["event"] for e in logs] == [Event.REFRESH_SKIPPED]


def test_the_configured_rule_decides_whose_lookup(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """With the portal's CENSUS_CAN_REFRESH a leader may not refresh another leader's referral
    (PermissionDenied, refresh_denied, nothing queued) and may refresh their own."""
    settings.CENSUS_CAN_REFRESH = "portal.leaders.can_refresh"
    info = drive(new_lookup("found", "found"), django_capture_on_commit_callbacks)
    leader, other = factories.leader(), factories.leader()
    info.user.referred_by = other
    info.user.save(update_fields=["referred_by"])
    clear_queue()
    with capture_logs() as logs, pytest.raises(PermissionDenied):
        refresh.request_refresh(info, requested_by=leader)
    assert [e["event"] for e in logs] == [Event.REFRESH_DENIED] and queued() == []
    assert refresh.refused_users(leader, [info.user_id, leader.pk]) == [info.user_id]
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh.request_refresh(info, requested_by=other) is True
    assert [p["args"] for p in queued()] == [(info.pk, info.step)]


def _ended(info: Any, seconds_ago: float) -> None:
    """Move the lookup's end ``seconds_ago`` into the past."""
    from datetime import timedelta

    from django.utils import timezone

    type(info).objects.filter(pk=info.pk).update(
        finished_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    info.refresh_from_db()


def test_a_lookup_that_just_ended_waits_out_the_cooldown(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """Within ``CENSUS_REFRESH_COOLDOWN`` of its end a lookup is not refreshed: a
    ``RefreshThrottled`` (a ``PermissionDenied``) says for how long, nothing is queued; once
    the cooldown is over the same request starts a budget."""
    settings.CENSUS_REFRESH_COOLDOWN = "10m"
    info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    leader = factories.leader()
    _ended(info, 60)
    clear_queue()
    with capture_logs() as logs, pytest.raises(refresh.RefreshThrottled) as refused:
        refresh.request_refresh(info, requested_by=leader)
    assert isinstance(refused.value, PermissionDenied)
    assert refused.value.reason == "cooldown"
    assert 480 <= refused.value.retry_after <= 540  # 600 - 60, less any stall since
    assert queued() == []
    assert [e["reason"] for e in logs if e["event"] == Event.REFRESH_THROTTLED] == ["cooldown"]
    _ended(info, 601)
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh.request_refresh(info, requested_by=leader) is True
    info.refresh_from_db()
    assert (info.work_class, info.requested_by_id) == ("refresh", leader.pk)


def test_one_requester_gets_at_most_the_hourly_cap(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """``CENSUS_REFRESH_PER_HOUR`` counts the refreshes one user started in the last hour:
    the next is refused with ``hourly_limit`` while another leader is still let in."""
    settings.CENSUS_REFRESH_PER_HOUR = 2
    leader, other = factories.leader(), factories.leader()
    infos = [drive(new_lookup("found"), django_capture_on_commit_callbacks) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh.request_refresh(infos[0], requested_by=leader)
        assert refresh.request_refresh(infos[1], requested_by=leader)
    with pytest.raises(refresh.RefreshThrottled) as refused:
        refresh.request_refresh(infos[2], requested_by=leader)
    assert refused.value.reason == "hourly_limit"
    assert 3500 <= refused.value.retry_after <= 3600
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh.request_refresh(infos[2], requested_by=other)
