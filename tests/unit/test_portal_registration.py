"""The example portal's registration as a deployment runs it: throttled per address and
overall."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from portal import throttle
from portal.models import Member
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.urls("example_site.urls")]

PASSWORD = "una-clave-bastante-larga"


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any) -> None:
    settings.LOGIN_URL = "portal:login"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The throttle's clock, moved by hand."""
    now = [1_000_000.0]
    monkeypatch.setattr(throttle, "_now", lambda: now[0])
    return now


def _register(
    cedula: str, *, address: str = "203.0.113.7", client: Client | None = None, **extra: Any
) -> Any:
    data = {
        "username": cedula,
        "first_name": "Ana",
        "last_name": "Pérez",
        "email": "ana@example.org",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **extra,
    }
    return (client or Client()).post(reverse("portal:register"), data, REMOTE_ADDR=address)


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
