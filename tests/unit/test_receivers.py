"""census.receivers: a lookup for each new user, queued only once the registration commits."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import serializers
from django.db import transaction
from structlog.testing import capture_logs

from census.models import CedulaInfo, Status
from tests import factories
from tests.driving import queued

pytestmark = pytest.mark.django_db


def test_new_user_gets_a_pending_lookup_queued_on_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Creating a user creates CedulaInfo(pending) at once and queues attempt 1 on commit."""
    with capture_logs() as logs:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            user = factories.member()
            assert CedulaInfo.objects.get(user=user).status == Status.PENDING
            assert queued() == []
            assert logs == []
        for callback in callbacks:
            callback()
    assert len(queued()) == 1
    assert user.cedula_info.status == Status.PENDING
    assert [(e["event"], e["from_status"], e["to_status"]) for e in logs] == [
        ("lookup_status_changed", None, "pending")
    ]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_registration_queues_nothing() -> None:
    """A registration that rolls back leaves no lookup, no queued task and no event."""
    with capture_logs() as logs, pytest.raises(RuntimeError), transaction.atomic():
        factories.member()
        raise RuntimeError("registration failed")
    assert not CedulaInfo.objects.exists()
    assert queued() == []
    assert logs == []


@pytest.mark.django_db(transaction=True)
def test_committed_registration_queues_one_task() -> None:
    """With real commits, a registration queues exactly one attempt."""
    user = factories.member()
    assert len(queued()) == 1
    assert user.cedula_info.status == Status.PENDING


def test_updating_a_user_never_triggers(django_capture_on_commit_callbacks: Any) -> None:
    """Saving an existing user queues nothing new."""
    with django_capture_on_commit_callbacks(execute=True):
        user = factories.member()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        user.first_name = "Ana"
        user.save()
    assert callbacks == []
    assert len(queued()) == 1
    assert CedulaInfo.objects.count() == 1


def test_fixture_loads_do_not_trigger(django_capture_on_commit_callbacks: Any) -> None:
    """A raw save (loaddata) creates no lookup."""
    user_model = factories.member().__class__
    data = serializers.serialize("json", [user_model(pk=999, username="1099999999", password="x")])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for obj in serializers.deserialize("json", data):
            obj.save()
    assert user_model.objects.filter(pk=999).exists()
    assert not CedulaInfo.objects.filter(user_id=999).exists()
    assert callbacks == []


def test_createsuperuser_without_a_cedula_gets_no_lookup(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The default CENSUS_LOOKUP_FOR: a superuser named ``admin`` gets no CedulaInfo and no
    task; ``lookup_skipped`` is logged once the registration commits."""
    with capture_logs() as logs:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            admin = get_user_model().objects.create_superuser(username="admin", password="x")
            assert logs == []
        for callback in callbacks:
            callback()
    assert not CedulaInfo.objects.filter(user=admin).exists()
    assert queued() == []
    assert [(e["event"], e["user_id"]) for e in logs] == [("lookup_skipped", admin.pk)]


def test_the_setting_decides_who_gets_a_lookup(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """CENSUS_LOOKUP_FOR names the callable asked for each new user: refused, no row at all;
    accepted (a superuser with a cédula by default), a pending lookup."""
    settings.CENSUS_LOOKUP_FOR = "tests.factories.leaders_only"
    with django_capture_on_commit_callbacks(execute=True):
        member, leader = factories.member(), factories.leader()
    assert not CedulaInfo.objects.filter(user=member).exists()
    assert CedulaInfo.objects.get(user=leader).status == Status.PENDING
    del settings.CENSUS_LOOKUP_FOR
    with django_capture_on_commit_callbacks(execute=True):
        superuser = factories.member(is_superuser=True)
    assert CedulaInfo.objects.get(user=superuser).status == Status.PENDING
    assert len(queued()) == 2
