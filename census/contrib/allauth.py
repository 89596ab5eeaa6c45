"""django-allauth's sign-up and login with the cédula as the username: one account per cédula.

A portal sets ``ACCOUNT_ADAPTER = "census.contrib.allauth.CensusAccountAdapter"`` (or derives
its own adapter from it). Where the cédula is the username (``CENSUS_CEDULA_FIELD`` names
allauth's ``ACCOUNT_USER_MODEL_USERNAME_FIELD``; both are ``"username"`` by default), the
adapter refuses a username that is not a cédula with ``census.validators``' translated
message, stores the canonical form (``1.023.456.789`` is saved as ``1023456789``), refuses
a cédula another account holds in any spelling, and logs a member in with any spelling of
their cédula. Where the cédula is another field, the sign-up form cleans it with
``census.validators`` (docs/allauth.md) and the adapter sets it on the user before allauth's
one save, so the new user's lookup is created with the cédula there.

The one module of census that imports django-allauth (the ``allauth`` extra).
"""

from __future__ import annotations

from typing import Any

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from django.core.exceptions import ValidationError

from census.cedula import canonical
from census.conf import settings
from census.validators import (
    CEDULA_TAKEN_CODE,
    CEDULA_TAKEN_MESSAGE,
    cedula_taken,
    normalize_cedula,
)


def _cedula_is_username() -> bool:
    return settings.cedula_field == account_settings.USER_MODEL_USERNAME_FIELD


class CensusAccountAdapter(DefaultAccountAdapter):
    """allauth's default adapter, with the cédula's rules where the cédula is the username."""

    def clean_username(self, username: str, shallow: bool = False) -> str:
        """The canonical cédula, or ``ValidationError``: ``invalid_cedula`` for a
        non-cédula, ``cedula_taken`` when another account holds it in any spelling.

        allauth's own checks (the user model's validators, ``ACCOUNT_USERNAME_BLACKLIST``)
        see the canonical form. ``shallow`` (allauth making up a username, as a social
        sign-up without a form does) skips the database; a made-up name is no cédula.
        """
        if not _cedula_is_username():
            return str(super().clean_username(username, shallow=shallow))
        cedula = str(super().clean_username(normalize_cedula(username), shallow=True))
        if not shallow and cedula_taken(cedula):
            raise ValidationError(CEDULA_TAKEN_MESSAGE, code=CEDULA_TAKEN_CODE)
        return cedula

    def save_user(self, request: Any, user: Any, form: Any, commit: bool = True) -> Any:
        """allauth's, with the cédula field set first where it is not the username and the
        form has it (cleaned by the form), so no second save has to add it."""
        field = settings.cedula_field
        if not _cedula_is_username() and field in form.cleaned_data:
            setattr(user, field, form.cleaned_data[field])
        return super().save_user(request, user, form, commit=commit)

    def authenticate(self, request: Any, **credentials: Any) -> Any:
        """allauth's, with a username that is a cédula in its canonical form: a member
        logs in with the spelling they signed up with (``1.023.456.789``) or any other."""
        username = credentials.get("username")
        if _cedula_is_username() and isinstance(username, str):
            credentials["username"] = canonical(username) or username
        return super().authenticate(request, **credentials)
