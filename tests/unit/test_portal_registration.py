"""The example portal's registration as a deployment runs it: throttled per address and
overall, confirmed by a mailed link before any census result shows (to the member or their
leader), the same answer for a new and a registered cédula, invite codes for leaders."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.core import mail, signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from census.models import CedulaInfo, Status
from portal import throttle, verification
from portal.followups import notify_leader
from portal.models import Member, Notice
from tests import factories
from tests.unit import test_portal

# The portal tests' settings (autouse), the link in a confirmation mail.
from tests.unit.test_portal import PASSWORD, _link, _portal_settings  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.urls("example_site.urls")]

CHECK_EMAIL = "Revisa tu correo para activar tu cuenta"


def _register(
    cedula: str, *, address: str = "203.0.113.7", client: Client | None = None, **extra: Any
) -> Any:
    return test_portal._register(client or Client(), cedula, address=address, **extra)


def _answer(cedula: str, **extra: Any) -> tuple[int, str, str]:
    """What a registration's visitor sees: status, where to, the page they land on (its
    token-bearing parts left out)."""
    client = Client()
    response = _register(cedula, client=client, **extra)
    landing = client.get(response["Location"]).content.decode()
    landing = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", landing)
    return response.status_code, response["Location"], landing


# -- throttle ---------------------------------------------------------------------------------


def test_registrations_over_the_limit_per_address_get_429_and_create_nothing(
    settings: Any, clock: list[float]
) -> None:
    """The 3rd POST from one address within the window (invalid forms count too) is a 429
    with the generic page and Retry-After; nobody is created; another address still gets in,
    and the first once its oldest POST is a window old."""
    settings.PORTAL_REGISTRATION_THROTTLE = (2, 3600)
    first = _register("12", address="203.0.113.7")  # invalid: counts all the same
    second = _register(factories.cedula(), address="203.0.113.7")
    clock[0] += 600
    refused = _register("1020304100", address="203.0.113.7")
    other = _register("1020304101", address="198.51.100.9")

    assert [first.status_code, second.status_code] == [200, 302]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "3000"
    page = refused.content.decode()
    assert "Demasiadas solicitudes" in page and "desde tu conexión" in page
    assert "Vuelve a intentarlo en 50 minutos" in page
    assert not Member.objects.filter(username="1020304100").exists()
    assert other.status_code == 302
    clock[0] += 3000
    assert _register("1020304100", address="203.0.113.7").status_code == 302


def test_registrations_over_the_total_get_429_from_any_address(
    settings: Any, clock: list[float]
) -> None:
    """PORTAL_REGISTRATION_THROTTLE_TOTAL counts every address together; a POST refused for
    its own address does not use up the total."""
    settings.PORTAL_REGISTRATION_THROTTLE = (1, 3600)
    settings.PORTAL_REGISTRATION_THROTTLE_TOTAL = (2, 3600)
    statuses = [
        _register(factories.cedula(), address=address).status_code
        for address in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3")
    ]
    refused = _register(factories.cedula(), address="192.0.2.4")

    assert statuses == [302, 429, 302, 429]
    assert refused.status_code == 429
    assert "demasiados registros en este momento" in refused.content.decode()
    assert Member.objects.count() == 2


@pytest.mark.parametrize(
    ("meta", "trusted", "expected"),
    [
        ({"REMOTE_ADDR": "203.0.113.7"}, False, "203.0.113.7"),
        ({"REMOTE_ADDR": "2001:db8:1:2:3:4:5:6"}, False, "2001:db8:1:2::/64"),
        ({"REMOTE_ADDR": "::ffff:203.0.113.7"}, False, "203.0.113.7"),
        ({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, False, "10.0.0.2"),
        (
            {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"},
            True,
            "203.0.113.7",
        ),
        ({"REMOTE_ADDR": "10.0.0.2"}, True, "10.0.0.2"),
    ],
    ids=["ipv4", "ipv6-by-64", "ipv4-mapped", "proxy-untrusted", "proxy-trusted", "no-header"],
)
def test_the_client_address_counted(
    rf: Any, settings: Any, meta: dict[str, str], trusted: bool, expected: str
) -> None:
    """REMOTE_ADDR, an IPv6 address by its /64; with PORTAL_TRUST_X_FORWARDED_FOR the last
    X-Forwarded-For address (the one the proxy appended), never one the client made up."""
    settings.PORTAL_TRUST_X_FORWARDED_FOR = trusted
    request = rf.post("/registro/", **meta)

    assert throttle.client_address(request) == expected


# -- the confirmation -------------------------------------------------------------------------


def test_the_mailed_link_confirms_logs_in_and_promotes_the_lookup(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The registration's lookup starts unverified (spare capacity only); the link's page
    asks for a click (GET confirms nothing), the POST confirms the member, logs them in and,
    after the commit, census.mark_verified makes the lookup a registration's."""
    with django_capture_on_commit_callbacks(execute=True):
        _register("1020304110")
    member = Member.objects.get(username="1020304110")
    info = CedulaInfo.objects.get(user=member)
    assert info.work_class == "unverified"
    [message] = mail.outbox
    client = Client()

    page = client.get(_link(message))
    member.refresh_from_db()
    assert page.status_code == 200 and "Confirmar mi correo" in page.content.decode()
    assert member.confirmed_at is None

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_link(message))

    assert response.status_code == 302 and response["Location"] == reverse("portal:profile")
    member.refresh_from_db()
    assert member.confirmed_at is not None
    assert client.get(reverse("portal:profile")).status_code == 200
    info.refresh_from_db()
    assert info.work_class == "registration"


def test_a_link_used_tampered_or_expired_is_refused(settings: Any) -> None:
    """A link works once; an altered one and one older than PORTAL_VERIFY_WITHIN do not."""
    settings.PORTAL_VERIFY_WITHIN = 3600
    _register("1020304111")
    _register("1020304112", email="beto@example.org")
    used, late = (_link(m) for m in mail.outbox)
    assert Client().post(used).status_code == 302
    token = late.split("/")[-2]
    tampered = late.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))

    answers = [Client().post(used), Client().get(tampered)]
    with pytest.MonkeyPatch.context() as patch:
        later = timezone.now().timestamp() + 3601
        patch.setattr(signing.time, "time", lambda: later)
        answers.append(Client().get(late))

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert "Este enlace no es válido" in answers[2].content.decode()
    assert Member.objects.get(username="1020304112").confirmed_at is None


def test_an_unconfirmed_member_sees_no_result_on_the_profile_or_the_json() -> None:
    """Logged in before confirming, a member whose lookup is found sees only "confirm your
    e-mail": no status, no place, and the page does not poll."""
    _register("1020304113")
    member = Member.objects.get(username="1020304113")
    CedulaInfo.objects.filter(user=member).update(
        status=Status.FOUND.value, puesto="COLEGIO SAN JOSE"
    )
    client = Client()
    client.force_login(member)

    data = client.get(reverse("portal:census_status")).json()
    page = client.get(reverse("portal:profile")).content.decode()

    assert data["status"] is None and data["final"] is True
    assert data["explanation"].startswith("Confirma tu correo para ver el resultado")
    assert "place" not in data
    assert "COLEGIO SAN JOSE" not in page and "Encontrada" not in page
    assert "Confirma tu correo para ver el resultado" in page
    assert 'data-final="true"' in page


def test_a_leader_sees_no_result_of_an_unconfirmed_referral_and_cannot_refresh_it(
    client: Client,
) -> None:
    """The leader's list shows an unconfirmed referral as "Sin confirmar", without its result
    or a refresh button; a refresh POST is the usual 403. Once confirmed, the result shows."""
    leader = factories.leader()
    _register("1020304114", invite_code=leader.invite_code)
    referral = Member.objects.get(username="1020304114")
    CedulaInfo.objects.filter(user=referral).update(status=Status.FOUND.value)
    client.force_login(leader)

    page = client.get(reverse("portal:profile")).content.decode()
    refresh = client.post(reverse("portal:refresh", args=[referral.pk]))
    Member.objects.filter(pk=referral.pk).update(confirmed_at=timezone.now())
    confirmed = client.get(reverse("portal:profile")).content.decode()

    assert "Sin confirmar" in page and "Encontrada" not in page
    assert reverse("portal:refresh", args=[referral.pk]) not in page
    assert refresh.status_code == 403
    assert "Encontrada" in confirmed
    assert reverse("portal:refresh", args=[referral.pk]) in confirmed


def test_the_leaders_notice_waits_for_the_confirmation(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A referral's lookup that ends before they confirm notifies nobody; confirming sends
    the leader that notice (and its e-mail) then, once."""
    leader = factories.leader(email="luz@example.org")
    _register("1020304115", invite_code=leader.invite_code)
    referral = Member.objects.get(username="1020304115")
    info = CedulaInfo.objects.get(user=referral)
    CedulaInfo.objects.filter(pk=info.pk).update(status=Status.FOUND.value, puesto="PUESTO 9")
    [link] = [_link(m) for m in mail.outbox]
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        notify_leader(lookup_id=info.pk, key=f"census-followup-{info.pk}-1-1")
    assert not Notice.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        Client().post(link)

    [notice] = Notice.objects.all()
    assert notice.leader == leader and "PUESTO 9" in notice.text
    assert [m.to for m in mail.outbox] == [["luz@example.org"]]


# -- the same answer for every cédula ---------------------------------------------------------


def test_a_registered_cedula_gets_the_answer_of_a_new_one_and_keeps_its_account() -> None:
    """Registering a confirmed member's or a leader's cédula (any spelling) answers exactly
    as a new cédula does; the account keeps its password and address, nobody is logged in,
    and another address gets no mail."""
    member = factories.member(username="1020304120", password="la-clave-de-ella", email="a@x.co")
    leader = factories.leader(username="1020304121")

    new = _answer("1020304122", email="mallory@example.org")
    answers = [
        _answer(spelling, email="mallory@example.org")
        for spelling in ("1.020.304.120", "1020304121")
    ]

    assert new[:2] == (302, reverse("portal:login")) and CHECK_EMAIL in new[2]
    assert answers == [new, new]
    member.refresh_from_db()
    assert member.check_password("la-clave-de-ella") and member.email == "a@x.co"
    assert Member.objects.get(pk=leader.pk).is_leader
    assert len(mail.outbox) == 1  # the new cédula's link only


def test_a_registered_cedula_with_its_own_address_gets_a_mail_that_it_exists() -> None:
    """The owner of the account's address already knows the account: that address gets
    "ya tienes una cuenta" (no link, no cédula)."""
    factories.member(username="1020304123", email="ana@example.org")

    response = _register("1020304123", email="ANA@example.org")

    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["ana@example.org"]
    assert "Ya tienes una cuenta" in message.body
    assert "/registro/confirmar/" not in message.body and "1020304123" not in message.body


def test_a_new_registration_replaces_one_never_confirmed() -> None:
    """Registering first someone else's cédula does not lock its owner out: the owner's
    registration replaces the unconfirmed one (same account and lookup, their password and
    address), the first link dies and the owner's works."""
    _register("1020304124", email="mallory@example.org", first_name="Mallory")
    squatter = Member.objects.get(username="1020304124")
    lookup = CedulaInfo.objects.get(user=squatter).pk

    response = _register("1020304124", email="ana@example.org", password1="x" * 20 + "ab12")
    assert response.status_code == 200  # password2 differs: a form error, nothing changes
    owner = _register("1020304124", email="ana@example.org")

    assert owner.status_code == 302
    first, second = mail.outbox
    assert first.to == ["mallory@example.org"] and second.to == ["ana@example.org"]
    assert Client().get(_link(first)).status_code == 400
    assert Client().post(_link(second)).status_code == 302
    member = Member.objects.get(username="1020304124")
    assert member.pk == squatter.pk and member.first_name == "Ana"
    assert member.email == "ana@example.org" and member.check_password(PASSWORD)
    assert member.confirmed_at is not None
    assert list(CedulaInfo.objects.filter(user=member).values_list("pk", flat=True)) == [lookup]


def test_an_unconfirmed_leader_or_staff_account_is_not_replaced() -> None:
    """Only a plain member's unconfirmed registration is replaced: one promoted to leader
    or staff before confirming keeps its data (and the answer is the same)."""
    _register("1020304125")
    _register("1020304126")
    Member.objects.filter(username="1020304125").update(role=Member.Role.LEADER)
    Member.objects.filter(username="1020304126").update(is_staff=True)
    mail.outbox.clear()

    answers = [
        _register(cedula, email="mallory@example.org").status_code
        for cedula in ("1020304125", "1020304126")
    ]

    assert answers == [302, 302]
    assert not mail.outbox
    assert set(Member.objects.values_list("email", flat=True)) == {"ana@example.org"}


# -- invite codes -----------------------------------------------------------------------------


def test_a_leader_has_an_invite_code_shown_on_their_profile(client: Client) -> None:
    """A leader gets a code when saved as a leader, or, promoted by an update(), when their
    profile is first shown; members have none."""
    leader = factories.leader()
    member = factories.member()
    promoted = factories.member()
    Member.objects.filter(pk=promoted.pk).update(role=Member.Role.LEADER)

    client.force_login(promoted)
    page = client.get(reverse("portal:profile")).content.decode()
    promoted.refresh_from_db()

    assert re.fullmatch(r"[A-Z2-9]{10}", leader.invite_code)
    assert member.invite_code is None
    assert promoted.invite_code and f">{promoted.invite_code}<" in page
    assert promoted.username not in page.split("Tu código")[1]


def test_the_migration_gives_every_existing_leader_an_invite_code() -> None:
    """portal 0003 fills a distinct code for each leader without one; members get none."""
    migration = importlib.import_module("portal.migrations.0003_confirmation_and_invite_code")
    leaders = [factories.leader(), factories.leader()]
    member = factories.member()
    Member.objects.filter(pk__in=[m.pk for m in leaders]).update(invite_code=None)

    migration.invite_codes_for_leaders(apps, None)

    codes = [Member.objects.get(pk=m.pk).invite_code for m in leaders]
    assert all(codes) and len(set(codes)) == 2
    assert Member.objects.get(pk=member.pk).invite_code is None


def test_is_verified_is_the_confirmation(settings: Any) -> None:
    """CENSUS_IS_VERIFIED: a registration is unverified until confirmed; accounts made
    otherwise (the admin, createsuperuser) are confirmed from the start."""
    _register("1020304127")
    registered = Member.objects.get(username="1020304127")
    made = factories.member()

    assert verification.is_verified(registered) is False
    assert verification.is_verified(made) is True
    registered.confirmed_at = timezone.now() - timedelta(seconds=1)
    assert verification.is_verified(registered) is True


def test_the_demo_registers_and_confirms_its_members(settings: Any) -> None:
    """census_demo's registration goes through the form and follows the mailed link: its
    members are confirmed (their lookups are registrations, not spare-capacity work)."""
    import io

    from django.test import override_settings

    from portal.demo import mix
    from portal.management.commands import census_demo

    config = census_demo.DemoConfig(
        members=3,
        rate_limit=1,
        scrape_timeout=20,
        retry_delays=(5,),
        max_attempts=1,
        workers=1,
        deadline=60,
    )
    demo = census_demo.Demo(config, out=io.StringIO(), live=False)
    settings.PORTAL_REGISTRATION_THROTTLE = (1, 3600)  # the demo turns it off for itself
    with override_settings(**census_demo.PORTAL_SETTINGS):
        tracked = [demo.register(n, case) for n, case in enumerate(mix.cases(3), start=1)]

    members = Member.objects.filter(pk__in=[t.user_id for t in tracked])
    assert [m.confirmed_at is not None for m in members] == [True] * 3
    assert not getattr(mail, "outbox", [])


def test_staff_confirming_a_member_in_the_admin_promotes_the_lookup(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """Filling *cuenta confirmada* in the admin has the link's effect on census: the lookup
    waiting in spare capacity becomes a registration's."""
    from tests.unit.test_portal import _change_form_data

    with django_capture_on_commit_callbacks(execute=True):
        _register("1020304128")
    member = Member.objects.get(username="1020304128")
    client.force_login(Member.objects.create_superuser(username="admin", password=PASSWORD))
    url = reverse("admin:portal_member_change", args=[member.pk])
    now = timezone.localtime()
    data = _change_form_data(
        client, url, confirmed_at_0=now.strftime("%Y-%m-%d"), confirmed_at_1="12:00:00"
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302

    assert Member.objects.get(pk=member.pk).confirmed_at is not None
    assert CedulaInfo.objects.get(user=member).work_class == "registration"
