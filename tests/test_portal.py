"""The example portal's pages: registration, profile, its JSON endpoint, the leader refresh."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from census.models import CedulaInfo, Status
from portal.forms import INVALID_CEDULA, TAKEN_CEDULA, UNKNOWN_LEADER
from portal.models import Member
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.urls("example_site.urls")]

PASSWORD = "una-clave-bastante-larga"


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any) -> None:
    settings.LOGIN_URL = "portal:login"
    # Hashing with the production hasher makes every registration take ~0.3 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _register(client: Client, cedula: str, **extra: str) -> Any:
    data = {
        "username": cedula,
        "first_name": "Ana",
        "last_name": "Pérez",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **extra,
    }
    return client.post(reverse("portal:register"), data)


def _finish(member: Any, status: Status, **fields: str) -> CedulaInfo:
    """Put a member's lookup in a final state, as the pipeline would (test data only)."""
    CedulaInfo.objects.filter(user=member).update(status=status.value, **fields)
    return CedulaInfo.objects.get(user=member)


def test_registration_creates_member_and_pending_lookup(client: Client) -> None:
    """A valid registration creates the member, logs them in and leaves a pending lookup."""
    response = _register(client, "1020304050")

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:profile")
    member = Member.objects.get(username="1020304050")
    assert member.role == Member.Role.MEMBER
    assert member.check_password(PASSWORD)
    assert CedulaInfo.objects.get(user=member).status == Status.PENDING
    assert client.get(reverse("portal:profile")).status_code == 200


def test_registration_normalises_the_cedula(client: Client) -> None:
    """Dots, spaces and dashes are removed before the cédula becomes the username."""
    _register(client, " 1.020.304-051 ")

    assert Member.objects.filter(username="1020304051").exists()


@pytest.mark.parametrize("cedula", ["12ab3456", "12", "12345678901", "1020 30 40 50 1"])
def test_invalid_cedula_is_rejected_with_a_clear_error(client: Client, cedula: str) -> None:
    """An invalid cédula re-shows the form with a Spanish error and creates nobody."""
    response = _register(client, cedula)

    assert response.status_code == 200
    assert response.context["form"].errors["username"] == [INVALID_CEDULA]
    assert not Member.objects.exists()
    assert not CedulaInfo.objects.exists()


def test_invalid_cedula_error_is_shown_on_the_page(client: Client) -> None:
    """The error text is on the page the member sees."""
    response = _register(client, "12ab3456")

    assert INVALID_CEDULA in response.content.decode()


def test_a_cedula_registers_only_once(client: Client) -> None:
    """A second registration with the same cédula, written differently, is refused."""
    factories.member(username="1020304052")

    response = _register(client, "1.020.304.052")

    assert response.context["form"].errors["username"] == [TAKEN_CEDULA]
    assert Member.objects.count() == 1


def test_registration_records_the_referring_leader(client: Client) -> None:
    """The optional leader cédula links the new member to that leader."""
    leader = factories.leader(username="1020304053")

    _register(client, "1020304054", leader_cedula="1.020.304.053")

    assert Member.objects.get(username="1020304054").referred_by == leader


def test_referral_must_name_a_leader(client: Client) -> None:
    """A leader cédula that belongs to no leader is a form error."""
    factories.member(username="1020304055")

    response = _register(client, "1020304056", leader_cedula="1020304055")

    assert response.context["form"].errors["leader_cedula"] == [UNKNOWN_LEADER]
    assert not Member.objects.filter(username="1020304056").exists()


def test_profile_requires_login(client: Client) -> None:
    """Anonymous visitors are sent to the login page."""
    response = client.get(reverse("portal:profile"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login"))


def test_profile_shows_status_and_polling_place(client: Client) -> None:
    """A found lookup shows the Spanish status label and the polling place."""
    member = factories.member()
    _finish(member, Status.FOUND, municipio="MEDELLIN", puesto="COLEGIO SAN JOSE", mesa="7")
    client.force_login(member)

    page = client.get(reverse("portal:profile")).content.decode()

    assert "Encontrada" in page
    assert "COLEGIO SAN JOSE" in page
    assert 'data-final="true"' in page


def test_profile_polls_while_the_lookup_runs(client: Client) -> None:
    """A pending lookup renders the polling hook: the JSON URL and data-final=false."""
    member = factories.member()
    client.force_login(member)

    page = client.get(reverse("portal:profile")).content.decode()

    assert "Pendiente" in page
    assert 'data-final="false"' in page
    assert reverse("portal:census_status") in page


def test_status_json_while_pending(client: Client) -> None:
    """The JSON endpoint reports the status, its label and that it is not final."""
    client.force_login(factories.member())

    data = client.get(reverse("portal:census_status")).json()

    assert data["status"] == "pending"
    assert data["label"] == "Pendiente"
    assert data["final"] is False
    assert data["place"] is None
    assert "Pendiente" in data["html"]


def test_status_json_shows_the_novedad_of_a_cancelled_cedula(client: Client) -> None:
    """A cancelled lookup carries its novedad, final, and never the cédula."""
    member = factories.member()
    _finish(member, Status.CANCELLED, novedad="Cancelada por Muerte", resolucion="0042 de 2024")
    client.force_login(member)

    response = client.get(reverse("portal:census_status"))
    data = response.json()

    assert data["final"] is True
    assert data["label"] == "Cancelada"
    assert data["novedad"]["novedad"] == "Cancelada por Muerte"
    assert member.username not in response.content.decode()
    assert response["Cache-Control"].startswith("max-age=0")


def test_status_json_requires_login(client: Client) -> None:
    """Anonymous requests get no census data."""
    response = client.get(reverse("portal:census_status"))

    assert response.status_code == 302


def test_member_cannot_refresh(client: Client) -> None:
    """A member's refresh is refused with 403 and queues nothing."""
    member = factories.member()
    info = _finish(member, Status.ERROR)
    client.force_login(member)

    response = client.post(reverse("portal:refresh", args=[member.pk]))

    assert response.status_code == 403
    info.refresh_from_db()
    assert info.status == Status.ERROR
    assert info.attempt == 1


def test_leader_refresh_starts_a_new_lookup(client: Client) -> None:
    """A leader's refresh of a finished lookup puts it back in pending with a new attempt."""
    leader = factories.leader()
    member = factories.member(referred_by=leader)
    info = _finish(member, Status.ERROR)
    client.force_login(leader)

    response = client.post(reverse("portal:refresh", args=[member.pk]), follow=True)

    assert response.redirect_chain == [(reverse("portal:profile"), 302)]
    assert "Pedimos una nueva consulta del censo." in response.content.decode()
    info.refresh_from_db()
    assert info.status == Status.PENDING
    assert info.attempt == 2


def test_leader_refresh_of_a_lookup_in_flight_changes_nothing(client: Client) -> None:
    """While a lookup runs, a leader's refresh is a no-op with an explanation."""
    leader = factories.leader()
    client.force_login(leader)

    response = client.post(reverse("portal:refresh", args=[leader.pk]), follow=True)

    assert "Ya hay una consulta en curso" in response.content.decode()
    assert CedulaInfo.objects.get(user=leader).attempt == 1


def test_refresh_is_post_only(client: Client) -> None:
    """A GET cannot trigger a lookup."""
    leader = factories.leader()
    client.force_login(leader)

    assert client.get(reverse("portal:refresh", args=[leader.pk])).status_code == 405


def test_only_leaders_see_the_refresh_button(client: Client) -> None:
    """The 'Actualizar consulta' button is on a leader's profile and not on a member's."""
    leader = factories.leader()
    factories.member(referred_by=leader, first_name="Beto")
    member = factories.member()

    client.force_login(member)
    assert "Actualizar consulta" not in client.get(reverse("portal:profile")).content.decode()
    client.force_login(leader)
    page = client.get(reverse("portal:profile")).content.decode()
    assert "Actualizar consulta" in page
    assert "Beto" in page
