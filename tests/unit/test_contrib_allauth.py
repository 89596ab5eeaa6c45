"""census.contrib.allauth: the account adapter's cédula rules, called as allauth calls them
(the sign-up over HTTP, through allauth's own page, is in tests/integration)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models.signals import post_save
from django.test import RequestFactory
from django.utils import translation

from census.contrib.allauth import CensusAccountAdapter
from census.models import CedulaInfo
from tests import factories

pytestmark = pytest.mark.django_db

TAKEN = "Ya existe una cuenta con esta cédula."
INVALID = (
    "La cédula no es válida: escribe solo el número, de 3 a 10 dígitos (puedes usar puntos, "
    "comas, espacios o guiones)."
)
PASSWORD = "una-clave-bastante-larga"
#: A field of the portal's user model standing in for a cédula field of its own (one that
#: allauth's ``save_user`` does not fill itself, as it does names and the email).
STAND_IN = "role"


def dotted(number: str) -> str:
    """``1023456789`` written ``1.023.456.789``."""
    return f"{int(number):,}".replace(",", ".")


@pytest.fixture(autouse=True)
def _allauth_installed(settings: Any) -> Iterator[None]:
    """allauth's apps installed for the test, as in a portal (their tables are not needed
    here). Installing them runs the admin's autodiscovery again, which registers allauth's
    models on the admin site for good: the site's registry is put back after the test."""
    registry = dict(admin.site._registry)
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "allauth.account.middleware.AccountMiddleware"]
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "allauth", "allauth.account"]
    yield
    admin.site._registry = registry


@pytest.fixture
def adapter() -> CensusAccountAdapter:
    return CensusAccountAdapter()


def refusal(adapter: CensusAccountAdapter, username: str, **kwargs: Any) -> ValidationError:
    with translation.override("es-co"), pytest.raises(ValidationError) as refused:
        adapter.clean_username(username, **kwargs)
    return refused.value


@pytest.mark.parametrize("spelling", [dotted, lambda n: f" {n[:4]} {n[4:]} ", lambda n: "00" + n])
def test_a_cedula_username_is_kept_in_its_canonical_form(
    adapter: CensusAccountAdapter, spelling: Any
) -> None:
    """Dots, spaces and leading zeros are dropped: what allauth saves is the digits."""
    number = factories.cedula()
    assert adapter.clean_username(spelling(number)) == number


@pytest.mark.parametrize("username", ["ana.perez", "12", "1023456789x", "admin"])
def test_a_username_that_is_no_cedula_gets_the_validators_message(
    adapter: CensusAccountAdapter, username: str
) -> None:
    """Not a cédula: census.validators' code and translated message, not allauth's or the
    user model's (which would accept ``ana.perez``)."""
    refused = refusal(adapter, username)
    assert (refused.code, refused.messages) == ("invalid_cedula", [INVALID])
    assert refusal(adapter, username, shallow=True).code == "invalid_cedula"


@pytest.mark.parametrize(
    ("stored", "typed"), [(str, dotted), (dotted, str), (lambda n: "0" + n, lambda n: n)]
)
def test_a_cedula_held_in_any_spelling_is_taken(
    adapter: CensusAccountAdapter, stored: Any, typed: Any
) -> None:
    """Another account holds the cédula, written as it was or otherwise: refused with the
    one message (allauth's own ``username_taken`` would see only the same spelling)."""
    number = factories.cedula()
    factories.member(username=stored(number))
    refused = refusal(adapter, typed(number))
    assert (refused.code, refused.messages) == ("cedula_taken", [TAKEN])


def test_a_shallow_clean_asks_no_database(
    adapter: CensusAccountAdapter, django_assert_num_queries: Any
) -> None:
    """allauth cleans shallow while it makes up a username: no query, so a taken cédula
    passes there (the sign-up's own clean refuses it)."""
    number = factories.cedula()
    factories.member(username=number)
    with django_assert_num_queries(0):
        assert adapter.clean_username(dotted(number), shallow=True) == number


def test_allauths_own_username_rules_see_the_canonical_form(
    adapter: CensusAccountAdapter, settings: Any
) -> None:
    """``ACCOUNT_USERNAME_BLACKLIST`` still applies, to the cédula in any spelling."""
    number = factories.cedula()
    settings.ACCOUNT_USERNAME_BLACKLIST = [number]
    assert refusal(adapter, dotted(number)).code == "username_blacklisted"


def test_with_the_cedula_in_another_field_usernames_are_allauths(
    adapter: CensusAccountAdapter, settings: Any
) -> None:
    """``CENSUS_CEDULA_FIELD`` names another field: the username is left to allauth."""
    settings.CENSUS_CEDULA_FIELD = STAND_IN
    assert adapter.clean_username("ana.perez") == "ana.perez"
    taken = factories.member(username="luz").username
    assert refusal(adapter, taken).code == "username_taken"


def test_a_cedula_field_of_the_form_is_on_the_user_at_its_first_save(
    adapter: CensusAccountAdapter, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The sign-up form's cleaned cédula field is set before allauth saves the user: the
    user is created with it (what ``CENSUS_LOOKUP_FOR`` sees), with one save, not two."""
    settings.CENSUS_CEDULA_FIELD = STAND_IN
    number = factories.cedula()
    saves: list[tuple[bool, str]] = []

    def record(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        saves.append((created, getattr(instance, STAND_IN)))

    post_save.connect(record, sender=settings.AUTH_USER_MODEL, dispatch_uid="test-record")
    form = SimpleNamespace(
        cleaned_data={"username": "ana", STAND_IN: number, "password1": PASSWORD}
    )
    try:
        with django_capture_on_commit_callbacks(execute=True):
            user = adapter.save_user(RequestFactory().post("/"), adapter.new_user(None), form)
    finally:
        post_save.disconnect(sender=settings.AUTH_USER_MODEL, dispatch_uid="test-record")
    assert saves == [(True, number)]
    assert CedulaInfo.objects.filter(user=user).exists()


def test_a_member_logs_in_with_any_spelling_of_their_cedula(
    adapter: CensusAccountAdapter,
) -> None:
    """The username stored canonical, the member types it as at sign-up (``1.023.456.789``):
    the same account. A username that is no cédula is passed on as typed."""
    number = factories.cedula()
    member = factories.member(username=number)
    member.set_password(PASSWORD)
    member.save()
    request = RequestFactory().post("/accounts/login/")
    found = adapter.authenticate(request, username=dotted(number), password=PASSWORD)
    assert found is not None and found.pk == member.pk
    assert adapter.authenticate(request, username=dotted(number), password="otra") is None
    admin = factories.member(username="admin")
    admin.set_password(PASSWORD)
    admin.save()
    assert adapter.authenticate(request, username="admin", password=PASSWORD).pk == admin.pk
