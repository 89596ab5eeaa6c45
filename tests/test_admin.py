"""census.admin: read-only lookups with their attempt history; refresh for leaders only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from census.models import Attempt, CedulaInfo, Status
from tests import factories
from tests.driving import clear_queue, queued

pytestmark = pytest.mark.django_db


def staff(**extra: Any) -> Any:
    user = factories.member(is_staff=True, **extra)
    user.user_permissions.add(Permission.objects.get(codename="view_cedulainfo"))
    return user


def finished_lookup() -> CedulaInfo:
    info = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=info.pk).update(status=Status.FOUND, puesto="COLEGIO 1")
    Attempt.objects.create(lookup=info, step=1, outcome="found")
    return info


def test_change_page_is_read_only_with_attempts_inline(client: Any) -> None:
    """Staff see the lookup and its attempts but no save button; POSTs change nothing."""
    info = finished_lookup()
    client.force_login(staff())
    url = reverse("admin:census_cedulainfo_change", args=[info.pk])
    page = client.get(url).content.decode()
    assert "COLEGIO 1" in page
    assert 'id="attempts-group"' in page  # the inline, shown with the lookup's permission
    assert "Intentos" in page
    assert 'name="_save"' not in page
    assert client.post(url, {"status": "error"}).status_code == 403
    info.refresh_from_db()
    assert info.status == Status.FOUND


def test_changelist_filters_by_status(client: Any) -> None:
    """The status filter narrows the list."""
    info = finished_lookup()
    other = CedulaInfo.objects.get(user=factories.member())
    client.force_login(staff())
    page = client.get(reverse("admin:census_cedulainfo_changelist") + "?status__exact=found")
    ids = [row.pk for row in page.context["cl"].result_list]
    assert ids == [info.pk] and other.pk not in ids


def test_leader_refresh_action_queues_a_lookup(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A leader's "Refresh census lookup" action starts a new budget and queues its attempt."""
    info = finished_lookup()
    client.force_login(staff(role="leader"))
    clear_queue()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:census_cedulainfo_changelist"),
            {"action": "refresh_lookup", "_selected_action": [info.pk]},
        )
    assert response.status_code == 302
    info.refresh_from_db()
    assert info.status == Status.PENDING
    assert [task["name"] for task in queued()] == [f"census-lookup-{info.pk}-step-{info.step}"]


def test_refresh_action_is_not_offered_to_members(client: Any) -> None:
    """Staff who are not leaders do not get the action, and posting it does nothing."""
    info = finished_lookup()
    client.force_login(staff())
    page = client.get(reverse("admin:census_cedulainfo_changelist"))
    assert "refresh_lookup" not in page.content.decode()
    client.post(
        reverse("admin:census_cedulainfo_changelist"),
        {"action": "refresh_lookup", "_selected_action": [info.pk]},
    )
    info.refresh_from_db()
    assert info.status == Status.FOUND
