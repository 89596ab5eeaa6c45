"""portal.followups.notify_leader: a referred member's final census answer becomes a notice on
the leader's profile and one email, once per follow-up key; the example settings wire it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from census import followups
from census.cedula import mask
from census.lookup.refresh import restart
from census.models import CedulaInfo, FollowUp, Status
from census.q2.context import current_task_id
from portal.followups import notify_leader
from portal.models import Member, Notice
from tests import factories
from tests.driving import drive

pytestmark = [pytest.mark.django_db, pytest.mark.urls("example_site.urls")]

ROOT = Path(__file__).resolve().parents[2]
KEY = "census-followup-1-1-1"
PLACE = {"puesto": "COLEGIO SAN JOSE", "municipio": "MEDELLIN", "mesa": "12"}


@pytest.fixture
def leader() -> Member:
    """A leader with an email address."""
    return factories.leader(first_name="Luz", last_name="Líder", email="luz@example.org")


def referred(leader: Member | None, status: Status, **fields: str) -> CedulaInfo:
    """A member (referred by ``leader``) whose lookup is in ``status``, as the pipeline
    leaves it (test data); returns the lookup."""
    member = factories.member(first_name="Ana", last_name="Pérez", referred_by=leader)
    CedulaInfo.objects.filter(user=member).update(status=status.value, **fields)
    return CedulaInfo.objects.get(user=member)


def test_found_makes_one_notice_and_one_email_with_the_polling_place(
    leader: Member, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    """found -> one notice for the leader (place, name, masked cédula, never the full
    cédula) and, once it committed, one email to the leader with the same text."""
    info = referred(leader, Status.FOUND, **PLACE)
    cedula = info.user.username

    with django_capture_on_commit_callbacks(execute=True):
        notify_leader(lookup_id=info.pk, key=KEY)

    notice = Notice.objects.get()
    assert (notice.leader, notice.member, notice.lookup_id) == (leader, info.user, info.pk)
    assert (notice.key, notice.status) == (KEY, "found")
    for text in ("COLEGIO SAN JOSE", "MEDELLIN", "mesa 12", "Ana Pérez", mask(cedula)):
        assert text in notice.text
    assert cedula not in notice.text
    assert notice.emailed_at is not None
    [email] = mailoutbox
    assert email.to == ["luz@example.org"]
    assert "COLEGIO SAN JOSE" in email.body and mask(cedula) in email.body
    assert cedula not in email.body and cedula not in email.subject


def test_the_same_key_twice_is_still_one_notice_and_one_email(
    leader: Member, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    """A repeated try of one follow-up (same key) finds its notice: nothing new, no email;
    another key (another chain of the lookup) is another notice."""
    info = referred(leader, Status.FOUND, **PLACE)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notify_leader(lookup_id=info.pk, key=KEY)
        notify_leader(lookup_id=info.pk, key=KEY)

    assert Notice.objects.count() == 1
    assert len(mailoutbox) == 1
    assert len(callbacks) == 1  # the repeat did not even plan an email

    with django_capture_on_commit_callbacks(execute=True):
        notify_leader(lookup_id=info.pk, key="census-followup-1-2-1")
    assert Notice.objects.count() == 2
    assert len(mailoutbox) == 2


def test_member_without_leader_gets_nothing(
    mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    """Nobody referred the member: no notice, no email."""
    info = referred(None, Status.FOUND, **PLACE)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notify_leader(lookup_id=info.pk, key=KEY)

    assert not Notice.objects.exists()
    assert mailoutbox == [] and callbacks == []


def test_not_found_gets_nothing(
    leader: Member, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    """not_found is not a status the leader hears about: no notice, no email."""
    info = referred(leader, Status.NOT_FOUND)

    with django_capture_on_commit_callbacks(execute=True):
        notify_leader(lookup_id=info.pk, key=KEY)

    assert not Notice.objects.exists()
    assert mailoutbox == []


@pytest.mark.parametrize(
    ("status", "fields", "expected"),
    [
        (Status.CANCELLED, {"novedad": "Cancelada por Muerte"}, "novedad en el censo"),
        (Status.ERROR, {}, "No pudimos completar la consulta"),
    ],
)
def test_cancelled_and_error_are_notified_too(
    leader: Member,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
    status: Status,
    fields: dict[str, str],
    expected: str,
) -> None:
    """cancelled (with its novedad) and error each make a notice and an email."""
    info = referred(leader, status, **fields)

    with django_capture_on_commit_callbacks(execute=True):
        notify_leader(lookup_id=info.pk, key=KEY)

    notice = Notice.objects.get()
    assert notice.status == status.value
    assert expected in notice.text and "Ana Pérez" in notice.text
    assert "Cancelada por Muerte" in notice.text or status != Status.CANCELLED
    assert len(mailoutbox) == 1


def test_a_rolled_back_try_leaves_no_notice_and_sends_no_email(
    leader: Member, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    """The email waits for the commit: a try whose transaction rolls back sends nothing,
    and the next try (same key) makes the notice and the one email."""
    info = referred(leader, Status.FOUND, **PLACE)

    with django_capture_on_commit_callbacks(execute=True):
        with contextlib.suppress(RuntimeError), transaction.atomic():
            notify_leader(lookup_id=info.pk, key=KEY)
            raise RuntimeError("the worker died before the commit")
        assert not Notice.objects.exists()
        notify_leader(lookup_id=info.pk, key=KEY)

    assert Notice.objects.count() == 1
    assert len(mailoutbox) == 1


def test_a_leader_without_email_gets_the_notice_only(
    mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    """No address: the notice is written, no email goes out, emailed_at stays empty."""
    info = referred(factories.leader(first_name="Sin Correo"), Status.FOUND, **PLACE)

    with django_capture_on_commit_callbacks(execute=True):
        notify_leader(lookup_id=info.pk, key=KEY)

    assert Notice.objects.get().emailed_at is None
    assert mailoutbox == []


def test_through_census_the_follow_up_notifies_once_with_its_key(
    leader: Member,
    new_lookup: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    """Wired as in the example settings: the lookup ends found, census runs the follow-up
    (with its own key) and the notice and email are there; a refresh before the run does
    not change what the notice reports; a second delivery adds nothing."""
    settings.CENSUS_FOLLOW_UPS = {"found": ["portal.followups.notify_leader"]}
    capture = django_capture_on_commit_callbacks
    info = new_lookup("found")
    Member.objects.filter(pk=info.user_id).update(referred_by=leader)
    info = drive(info, capture)
    row = FollowUp.objects.get(lookup=info)
    assert row.state == FollowUp.State.QUEUED
    restart(info.pk, requester_id=None)  # a refresh: the lookup is pending again

    current_task_id.set("portal-ft")
    with capture(execute=True):
        assert followups.run_follow_up(row.pk)["succeeded"]
        assert followups.run_follow_up(row.pk)["skipped"]

    notice = Notice.objects.get()
    assert (notice.key, notice.status, notice.leader) == (row.key, "found", leader)
    assert "PUESTO" in notice.text  # the fake scraper's polling place
    assert len(mailoutbox) == 1
    assert FollowUp.objects.get(pk=row.pk).state == FollowUp.State.SUCCEEDED


def test_the_leader_profile_lists_the_notices(leader: Member, client: Client) -> None:
    """The leader's profile has an "Avisos" list with the notice; the member's has none."""
    info = referred(leader, Status.FOUND, **PLACE)
    notify_leader(lookup_id=info.pk, key=KEY)

    client.force_login(leader)
    page = client.get(reverse("portal:profile")).content.decode()
    assert "Avisos" in page and 'data-testid="notices"' in page
    assert "COLEGIO SAN JOSE" in page and mask(info.user.username) in page

    client.force_login(info.user)
    assert "Avisos" not in client.get(reverse("portal:profile")).content.decode()


def test_a_leader_without_notices_sees_an_empty_list(leader: Member, client: Client) -> None:
    """A leader with no notice yet sees the section with a sentence saying so."""
    client.force_login(leader)
    page = client.get(reverse("portal:profile")).content.decode()
    assert "Avisos" in page and "Todavía no hay avisos" in page


def test_the_example_settings_wire_the_follow_up(tmp_path: Path) -> None:
    """example_site.settings: notify_leader for found, cancelled and error; console email."""
    show = (
        "import json, example_site.settings as s; "
        "print(json.dumps({'F': s.CENSUS_FOLLOW_UPS, 'E': s.EMAIL_BACKEND}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", show],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'example'}",
            "PORTAL_VAR_DIR": str(tmp_path),
            "PORTAL_DEBUG": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout)
    path = ["portal.followups.notify_leader"]
    assert values["F"] == {"found": path, "cancelled": path, "error": path}
    assert values["E"] == "django.core.mail.backends.console.EmailBackend"


def test_the_demo_summary_counts_follow_ups_and_names_the_failed_ones(leader: Member) -> None:
    """./demo's summary: how many follow-ups were planned, succeeded and failed (with the
    failed path), which ones have not run yet, and the leader notices written."""
    from portal.demo.summary import check_follow_ups, follow_ups_lines

    assert follow_ups_lines(check_follow_ups([])) == [
        "Follow-ups (CENSUS_FOLLOW_UPS): none planned."
    ]
    State = FollowUp.State
    infos = [referred(leader, Status.FOUND, **PLACE) for _ in range(3)]
    for info, state in zip(infos, [State.SUCCEEDED, State.FAILED, State.QUEUED], strict=True):
        FollowUp.objects.create(
            lookup=info,
            step=1,
            position=1,
            status="found",
            path="portal.followups.notify_leader",
            state=state,
        )
    notify_leader(lookup_id=infos[0].pk, key=KEY)

    lines = follow_ups_lines(check_follow_ups(info.pk for info in infos))

    assert lines[0] == (
        "Follow-ups (CENSUS_FOLLOW_UPS): 3 planned, 1 succeeded, 1 failed; 1 leader notice written."
    )
    assert "FAILED: portal.followups.notify_leader x1" in lines[1]
    assert lines[2] == "  not run yet: queued 1 (the next qcluster runs them)"
