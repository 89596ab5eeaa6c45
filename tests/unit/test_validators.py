"""census.validators: a sign-up form's validator, normaliser and duplicate check."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from census.validators import (
    INVALID_CEDULA_MESSAGE,
    CedulaValidator,
    cedula_taken,
    normalize_cedula,
    validate_cedula,
)

SPANISH = (
    "La cédula no es válida: escribe solo el número, de 3 a 10 dígitos (puedes usar puntos, "
    "comas, espacios o guiones)."
)
NOT_CEDULAS = ["admin", "12", "12345678901", "１２３４５６７", "1023456789x", "", None, 1.0e9]


@pytest.mark.parametrize("value", ["1.023.456.789", "1023456789", " 0012345678 ", 1023456789])
def test_the_validator_takes_every_spelling_normalize_reads(value: Any) -> None:
    """Separators, surrounding spaces, leading zeros and an integer are all a cédula."""
    validate_cedula(value)
    CedulaValidator()(value)


@pytest.mark.parametrize("value", NOT_CEDULAS)
def test_the_validator_refuses_a_non_cedula_with_a_generic_message(value: Any) -> None:
    """A non-cédula: ValidationError with code ``invalid_cedula`` and a message that shows
    nothing of the value (not even the last digits ``normalize``'s own message keeps)."""
    with pytest.raises(ValidationError) as refused:
        validate_cedula(value)
    assert refused.value.code == "invalid_cedula"
    assert refused.value.messages == [str(INVALID_CEDULA_MESSAGE)]
    assert "789" not in refused.value.messages[0] and "admin" not in refused.value.messages[0]


def test_the_message_is_translated() -> None:
    """Under es-co the message is the catalog's Spanish; under en, the English msgid."""
    with translation.override("es-co"), pytest.raises(ValidationError) as spanish:
        validate_cedula("admin")
    assert spanish.value.messages == [SPANISH]
    with translation.override("en"):
        with pytest.raises(ValidationError) as english:
            validate_cedula("admin")
        assert english.value.messages[0].startswith("Enter a valid cédula: the number alone")


def test_the_validator_deconstructs_for_migrations() -> None:
    """On a model field it is kept in migrations by its public path, and equal instances
    compare equal (no spurious migration); a custom message or code is kept."""
    path, args, kwargs = CedulaValidator().deconstruct()
    assert (path, args, kwargs) == ("census.validators.CedulaValidator", (), {})
    assert CedulaValidator() == validate_cedula
    custom = CedulaValidator(message="Solo números.", code="cedula")
    assert custom.deconstruct()[2] == {"message": "Solo números.", "code": "cedula"}
    assert custom != validate_cedula
    with pytest.raises(ValidationError) as refused:
        custom("admin")
    assert (refused.value.code, refused.value.messages) == ("cedula", ["Solo números."])


def test_a_form_field_with_the_validator() -> None:
    """A form's field with the validator shows its message for a non-cédula."""

    class SignUp(forms.Form):
        cedula = forms.CharField(validators=[validate_cedula])

    with translation.override("es-co"):
        form = SignUp(data={"cedula": "ana.perez"})
        assert form.errors == {"cedula": [SPANISH]}
    assert SignUp(data={"cedula": "1.023.456.789"}).is_valid()


def test_normalize_cedula_gives_the_canonical_digits_or_the_validators_error() -> None:
    """``normalize_cedula`` is ``normalize`` with Django's error: same message and code as
    the validator."""
    assert normalize_cedula("1.023.456.789") == "1023456789"
    assert normalize_cedula(" 01-023-456-789\r\n") == "1023456789"
    with translation.override("es-co"), pytest.raises(ValidationError) as refused:
        normalize_cedula("1.023.456.78x")
    assert (refused.value.code, refused.value.messages) == ("invalid_cedula", [SPANISH])


def _user(stored: str, **extra: Any) -> Any:
    """A user whose cédula field holds ``stored`` as written (no lookup: none is needed)."""
    from census.models import CedulaInfo

    user = get_user_model().objects.create_user(username=stored, **extra)
    CedulaInfo.objects.filter(user=user).delete()
    return user


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stored",
    [
        "1023456789",
        "1.023.456.789",
        "1,023,456,789",
        "1 023 456 789",
        "1-023-456-789",
        "01023456789",
        "0.001.023.456.789",
        " 1023456789\r\n",
        "1\u00a0023\u202f456\u2009789",
        "1\u2013023\u2014456\u2015789",
    ],
)
def test_cedula_taken_compares_canonical_forms(stored: str) -> None:
    """A cédula stored in any spelling ``normalize`` reads is taken, whichever spelling is
    asked about."""
    _user(stored)
    assert cedula_taken("1023456789")
    assert cedula_taken("1.023.456.789")
    assert not cedula_taken("1023456788")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stored",
    [
        "91023456789",
        "10234567890",
        "1023456789x",
        "x1023456789",
        "1023\n456789",
        "1023456789\n-",
        "0" * 60 + "1023456789",
        "admin",
    ],
)
def test_cedula_taken_ignores_values_that_are_not_that_cedula(stored: str) -> None:
    """A longer number, other characters, a line break inside (before a trailing dash the
    database's pattern takes it, ``normalize`` does not), text longer than ``normalize``
    reads or a non-cédula never counts as the cédula."""
    _user(stored)
    assert not cedula_taken("1023456789")


@pytest.mark.django_db
def test_cedula_taken_excludes_the_user_being_edited() -> None:
    """``exclude_user`` (a form editing that user's own cédula) does not count."""
    user = _user("1.023.456.789")
    assert not cedula_taken("1023456789", exclude_user=user)
    assert cedula_taken("1023456789", exclude_user=_user("52111222"))
    assert cedula_taken("1023456789", exclude_user=get_user_model()())  # unsaved: no pk


@pytest.mark.django_db
def test_cedula_taken_reads_the_cedula_field_setting(settings: Any) -> None:
    """The field compared is ``CENSUS_CEDULA_FIELD``, not the username."""
    settings.CENSUS_CEDULA_FIELD = "email"
    _user("ana", email="1.023.456.789")
    _user("52111222")
    assert cedula_taken("1023456789")
    assert not cedula_taken("52111222")


@pytest.mark.django_db
def test_cedula_taken_refuses_a_non_cedula() -> None:
    """Asking about a non-cédula raises the validator's error (no user is compared)."""
    _user("admin")
    with pytest.raises(ValidationError) as refused:
        cedula_taken("admin")
    assert refused.value.code == "invalid_cedula"


@pytest.mark.django_db
def test_cedula_taken_costs_one_indexed_query_when_stored_canonical() -> None:
    """Taken in its canonical form: one exact query. Not taken: a second one, the scan."""
    _user("1023456789")
    with CaptureQueriesContext(connection) as taken:
        assert cedula_taken("1.023.456.789")
    with CaptureQueriesContext(connection) as free:
        assert not cedula_taken("52111222")
    assert (len(taken), len(free)) == (1, 2)
