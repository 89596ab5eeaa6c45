"""census.eligibility: who gets a lookup by default (``CENSUS_LOOKUP_FOR``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from census.eligibility import lookup_for


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"username": "admin", "is_superuser": True}, False, id="superuser-admin"),
        pytest.param({"username": "", "is_superuser": True}, False, id="superuser-empty"),
        pytest.param({"username": "12", "is_superuser": True}, False, id="superuser-too-short"),
        pytest.param({"username": "1.023.456.789", "is_superuser": True}, True, id="superuser"),
        pytest.param({"username": "1023456789"}, True, id="member"),
        pytest.param({"username": "ana.perez"}, True, id="member-non-cedula"),
        pytest.param({"username": ""}, True, id="member-empty"),
    ],
)
def test_only_a_superuser_without_a_cedula_is_refused(
    fields: dict[str, Any], expected: bool
) -> None:
    """A superuser whose cédula field is empty or no cédula gets no lookup; every other user
    does, a member with a non-cédula too (the lookup shows the mistake as an error)."""
    assert lookup_for(get_user_model()(**fields)) is expected


def test_the_cedula_field_setting_is_read(settings: Any) -> None:
    """The cédula is read from ``CENSUS_CEDULA_FIELD``, not from the username."""
    settings.CENSUS_CEDULA_FIELD = "email"
    user_model = get_user_model()
    assert not lookup_for(user_model(username="1023456789", email="", is_superuser=True))
    assert lookup_for(user_model(username="admin", email="1023456789", is_superuser=True))
