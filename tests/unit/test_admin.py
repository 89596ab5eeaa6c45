"""census.admin: read-only lookups with their attempt history; refresh for leaders only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from census.models import Attempt, CedulaInfo, FollowUp, Status
from tests import factories
from tests.driving import clear_queue, queued

pytestmark = pytest.mark.django_db


def staff(**extra: Any) -> Any:
    user = factories.member(is_staff=True, **extra)
    user.user_permissions.add(Permission.objects.get(codename="view_cedulainfo"))
    return user


def finished_lookup(**extra: Any) -> CedulaInfo:
    info = CedulaInfo.objects.get(user=factories.member(**extra))
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


def test_retry_count_is_shown_in_the_list_and_the_lookup(client: Any) -> None:
    """The design card's ``retry_count`` is a column of the list and a field of the lookup."""
    info = finished_lookup()
    CedulaInfo.objects.filter(pk=info.pk).update(retry_count=2)
    client.force_login(staff())
    listing = client.get(reverse("admin:census_cedulainfo_changelist"))
    columns = listing.content.decode()
    assert "column-retry_count" in columns and '<td class="field-retry_count">2</td>' in columns
    page = client.get(reverse("admin:census_cedulainfo_change", args=[info.pk])).content.decode()
    assert "field-retry_count" in page and "Reintentos" in page


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
    """A leader's "Refresh census lookup" action on one of their referrals starts a new budget
    and queues its attempt."""
    leader = staff(role="leader")
    info = finished_lookup(referred_by=leader)
    client.force_login(leader)
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


def test_a_leader_may_not_refresh_another_leaders_referral(client: Any) -> None:
    """The action asks CENSUS_CAN_REFRESH (the portal's referral rule): another leader's
    referral is left alone, refresh_denied is logged and the leader is told."""
    from structlog.testing import capture_logs

    from census.events import Event

    info = finished_lookup(referred_by=factories.leader())
    client.force_login(staff(role="leader"))
    clear_queue()
    with capture_logs() as logs:
        response = client.post(
            reverse("admin:census_cedulainfo_changelist"),
            {"action": "refresh_lookup", "_selected_action": [info.pk]},
            follow=True,
        )
    assert "1 consulta(s) que no puedes volver a pedir" in response.content.decode()
    denied = [e for e in logs if e["event"] == Event.REFRESH_DENIED]
    assert [(e["lookup_id"], e["door"]) for e in denied] == [(info.pk, "admin")]
    info.refresh_from_db()
    assert info.status == Status.FOUND and queued() == []


def test_refreshing_many_rows_opens_a_paced_bulk_run(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Several rows go to a background bulk run (kind admin, fed by the cluster's schedule at
    the site's pace): nothing is queued at once, nothing is restarted yet."""
    from django_q.models import Schedule

    from census.models import BulkMember, BulkRun

    superuser = factories.member(is_staff=True, is_superuser=True)
    rows = [finished_lookup() for _ in range(5)]
    client.force_login(superuser)
    clear_queue()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:census_cedulainfo_changelist"),
            {"action": "refresh_lookup", "_selected_action": [info.pk for info in rows]},
        )
    run = BulkRun.objects.get()
    assert (run.kind, run.background, run.requested_by_id, run.total) == (
        BulkRun.Kind.ADMIN,
        True,
        superuser.pk,
        5,
    )
    members = set(BulkMember.objects.filter(run=run).values_list("user_id", flat=True))
    assert members == {info.user_id for info in rows}
    assert Schedule.objects.filter(name=f"census-bulk-{run.pk}").exists()
    assert queued() == []
    assert set(
        CedulaInfo.objects.filter(pk__in=[i.pk for i in rows]).values_list("status", flat=True)
    ) == {Status.FOUND}


def failed_follow_up(info: CedulaInfo) -> FollowUp:
    return FollowUp.objects.create(
        lookup=info,
        step=info.step,
        position=1,
        status=Status.FOUND,
        path="portal.followups.notify_leader",
        state=FollowUp.State.FAILED,
        tries=4,
        error="builtins.RuntimeError: the mail server said no",
    )


def test_the_lookup_page_lists_its_follow_ups(client: Any) -> None:
    """A lookup's follow-ups are shown on its page, to whoever may view the lookup."""
    info = finished_lookup()
    failed_follow_up(info)
    client.force_login(staff())
    page = client.get(reverse("admin:census_cedulainfo_change", args=[info.pk])).content.decode()
    assert 'id="follow_ups-group"' in page
    assert "portal.followups.notify_leader" in page and "the mail server said no" in page


def test_a_leader_runs_a_failed_follow_up_again(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The "run again" action queues a failed follow-up with a fresh ladder; staff who are
    not leaders are not offered it, and posting it changes nothing."""
    info = finished_lookup()
    row = failed_follow_up(info)
    url = reverse("admin:census_followup_changelist")
    action = {"action": "run_again", "_selected_action": [row.pk]}
    client.force_login(staff())
    assert "run_again" not in client.get(url).content.decode()
    client.post(url, action)
    assert FollowUp.objects.get(pk=row.pk).state == FollowUp.State.FAILED

    client.force_login(staff(role="leader"))
    clear_queue()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, action).status_code == 302
    row.refresh_from_db()
    assert (row.state, row.tries) == (FollowUp.State.QUEUED, 0)
    assert [t["name"] for t in queued()] == [f"census-followup-{info.pk}-1.1-notify_leader"]


# -- unexpected pages (census.models.PageSnapshot) ---------------------------------------------

#: The smallest valid PNG: the admin shows it inline as a data: URL.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4ee0000000049454e44ae426082"
)


def test_unexpected_pages_list_each_signature_with_its_count(client: Any) -> None:
    """The list shows signature, count, path and whether a screenshot was kept; the page
    shows the screenshot inline and the scrubbed HTML, read-only."""
    from census.models import PageSnapshot

    row = PageSnapshot.objects.create(
        signature="page:missing_element:documento",
        count=7,
        path="/consultar/",
        html='<input id="numeroDocumento" value="">',
        screenshot=PIXEL,
    )
    PageSnapshot.objects.create(signature="consulta:not_json", count=2)
    client.force_login(staff())
    listing = client.get(reverse("admin:census_pagesnapshot_changelist"))
    assert listing.status_code == 200
    shown = {(r.signature, r.count) for r in listing.context["cl"].result_list}
    assert shown == {("page:missing_element:documento", 7), ("consulta:not_json", 2)}
    url = reverse("admin:census_pagesnapshot_change", args=[row.pk])
    page = client.get(url).content.decode()
    assert 'src="data:image/png;base64,' in page
    assert "numeroDocumento" in page  # the HTML, escaped, as text
    assert 'name="_save"' not in page
    assert client.post(url, {"count": "0"}).status_code == 403
    row.refresh_from_db()
    assert row.count == 7


def test_unexpected_pages_need_the_lookup_view_permission(client: Any) -> None:
    """Staff without view_cedulainfo see neither the list nor the module."""
    client.force_login(factories.member(is_staff=True))
    response = client.get(reverse("admin:census_pagesnapshot_changelist"))
    assert response.status_code == 403


# -- captcha solves and the solving service (census.models.CaptchaToken, CaptchaService) -------


def test_captcha_solves_are_listed_without_their_token(client: Any) -> None:
    """The solves' list and page show state, mode, lookup, times, refused and error, filter
    by state, mode and refused, and never the token (a bearer credential); read-only."""
    from census.models import CaptchaToken

    info = finished_lookup()
    held = factories.captcha_solve("held", lookup=info, step=1, token="03A-secret-held-token")
    factories.captcha_solve("used", lookup=info, step=1, refused=True, error="")
    factories.captcha_solve("failed", error="service_timeout: no token")
    client.force_login(staff())
    url = reverse("admin:census_captchatoken_changelist")
    listing = client.get(url)
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "03A-secret-held-token" not in page
    for column in ("state", "mode", "lookup", "asked_at", "solved_at", "refused", "error"):
        assert f"column-{column}" in page
    assert "service_timeout: no token" in page
    assert f"consulta {info.pk}" in page  # the lookup by its id and status, never a cédula
    assert info.user.username not in page
    shown = {row.pk for row in client.get(url + "?state__exact=held").context["cl"].result_list}
    assert shown == {held.pk}
    refused = client.get(url + "?refused__exact=1").context["cl"].result_list
    assert [row.state for row in refused] == [CaptchaToken.State.USED]
    assert len(client.get(url + "?mode__exact=pool").context["cl"].result_list) == 3

    change = reverse("admin:census_captchatoken_change", args=[held.pk])
    page = client.get(change).content.decode()
    assert "03A-secret-held-token" not in page and "field-token" not in page
    assert "field-state" in page and 'name="_save"' not in page
    assert client.post(change, {"token": "x"}).status_code == 403
    assert CaptchaToken.objects.get(pk=held.pk).token == "03A-secret-held-token"


def test_the_solving_service_row_shows_its_pause(client: Any) -> None:
    """The service's row says paused (with reason, until, failed probes) or available, its
    site key and who keeps the pool; read-only."""
    from datetime import timedelta

    from django.utils import timezone

    from census.models import CaptchaService

    row = CaptchaService.objects.create(
        name="default",
        site_key="6LcKnownSiteKey",
        open_until=timezone.now() + timedelta(seconds=60),
        reason="zero_balance",
        failures=3,
        lease_holder="worker-1:4242",
    )
    client.force_login(staff())
    url = reverse("admin:census_captchaservice_changelist")
    page = client.get(url).content.decode()
    assert '<td class="field-state">en pausa</td>' in page
    assert "zero_balance" in page and "6LcKnownSiteKey" in page and "worker-1:4242" in page
    assert '<td class="field-failures">3</td>' in page
    CaptchaService.objects.filter(pk=row.pk).update(open_until=None, reason="", failures=0)
    assert '<td class="field-state">disponible</td>' in client.get(url).content.decode()
    change = reverse("admin:census_captchaservice_change", args=[row.pk])
    assert 'name="_save"' not in client.get(change).content.decode()
    assert client.post(change, {"reason": "x"}).status_code == 403


def test_captcha_rows_need_the_lookup_view_permission(client: Any) -> None:
    """Staff without view_cedulainfo see neither the solves nor the service."""
    client.force_login(factories.member(is_staff=True))
    for name in ("captchatoken", "captchaservice"):
        assert client.get(reverse(f"admin:census_{name}_changelist")).status_code == 403


def test_lookups_show_their_work_class_and_each_classs_queue(client: Any, settings: Any) -> None:
    """The list has a work class column and filter under a line with each class's waiting
    lookups and share; a lookup's page shows who requested its budget and when, and each
    attempt's class."""
    from django.utils import timezone

    settings.CENSUS_CAPACITY_SHARES = {"refresh": 0.25, "bulk": 0.1}
    requester = factories.leader(username="lider-7")
    viewer = staff()
    CedulaInfo.objects.update(status=Status.FOUND)  # the requester's and the viewer's own
    refreshed = finished_lookup()
    asked = timezone.now()
    CedulaInfo.objects.filter(pk=refreshed.pk).update(
        work_class="refresh", requested_by=requester, requested_at=asked
    )
    Attempt.objects.filter(lookup=refreshed).update(work_class="refresh")
    registration = CedulaInfo.objects.get(user=factories.member())  # pending: waits
    unverified = [CedulaInfo.objects.get(user=factories.member()) for _ in range(2)]
    CedulaInfo.objects.filter(pk__in=[i.pk for i in unverified]).update(work_class="unverified")
    client.force_login(viewer)

    url = reverse("admin:census_cedulainfo_changelist")
    listing = client.get(url).content.decode()
    assert (
        "<h2>En espera por clase de trabajo: registro 1 (primero) · actualización 0 (cuota "
        "del 25 %) · masiva 0 (cuota del 10 %) · registro sin verificar 2 (solo capacidad "
        "sobrante)</h2>"
    ) in listing
    assert "column-work_class" in listing
    assert '<td class="field-work_class">actualización</td>' in listing
    changelist = client.get(url + "?work_class__exact=unverified").context["cl"]
    assert "work_class" in [getattr(spec, "field_path", "") for spec in changelist.filter_specs]
    filtered = changelist.result_list
    assert sorted(row.pk for row in filtered) == sorted(i.pk for i in unverified)
    assert registration.pk not in [row.pk for row in filtered]

    page = client.get(reverse("admin:census_cedulainfo_change", args=[refreshed.pk]))
    text = page.content.decode()
    requested_by = re.search(r'field-requested_by">.*?readonly">(.*?)</div>', text, re.DOTALL)
    requested_at = re.search(r'field-requested_at">.*?readonly">(.*?)</div>', text, re.DOTALL)
    assert requested_by and str(requester) in requested_by[1] and "Solicitada por" in text
    assert requested_at and requested_at[1] != "-" and "Solicitada el" in text
    # The attempt's class, in the inline.
    assert re.search(r'<td class="field-work_class">\s*<p>actualización</p>', text)
    assert 'name="_save"' not in text
