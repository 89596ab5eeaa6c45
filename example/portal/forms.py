"""Registration and login: the cédula is the username, always in its canonical spelling.

``census.cedula.normalize`` decides what a cédula is and how it is spelled once stored (the
username); both forms go through it, so ``1.234.567.890`` and ``1234567890`` are one account
and log in alike.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from census.cedula import InvalidCedula, normalize
from portal.models import Member

INVALID_CEDULA = (
    "La cédula no es válida: escribe solo el número, de 3 a 10 dígitos "
    "(puedes usar puntos, comas, espacios o guiones)."
)
TAKEN_CEDULA = "Ya existe una cuenta con esta cédula."
UNKNOWN_LEADER = "No encontramos un líder con esa cédula."


def _cedula(value: str) -> str:
    """The canonical cédula, or a form error (in Spanish: ``InvalidCedula``'s text is not)."""
    try:
        return normalize(value)
    except InvalidCedula:
        raise forms.ValidationError(INVALID_CEDULA, code="invalid_cedula") from None


class RegistrationForm(BaseUserCreationForm):
    """Cédula, name, password and, optionally, the cédula of the leader who referred them."""

    leader_cedula = forms.CharField(
        label="Cédula del líder que te invitó",
        required=False,
        help_text="Opcional.",
    )

    class Meta:
        model = Member
        fields = ("username", "first_name", "last_name")
        labels = {"username": "Cédula", "first_name": "Nombres", "last_name": "Apellidos"}
        help_texts = {"username": "Solo el número, por ejemplo 1.020.304.050."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["first_name"].required = True
        self.fields["username"].widget.attrs.update(inputmode="numeric", autocomplete="username")

    def clean_username(self) -> str:
        # The duplicate check is on the canonical form; the unique username column backs it
        # (a concurrent registration of the same cédula gets the same error, see the view).
        cedula = _cedula(self.cleaned_data.get("username", ""))
        if Member.objects.filter(username=cedula).exists():
            raise forms.ValidationError(TAKEN_CEDULA, code="taken")
        return cedula

    def clean_leader_cedula(self) -> Member | None:
        value = self.cleaned_data.get("leader_cedula", "").strip()
        if not value:
            return None
        leader = Member.objects.filter(username=_cedula(value), role=Member.Role.LEADER).first()
        if leader is None:
            raise forms.ValidationError(UNKNOWN_LEADER, code="unknown_leader")
        return leader

    def save(self, commit: bool = True) -> Member:
        member: Member = super().save(commit=False)
        member.referred_by = self.cleaned_data.get("leader_cedula")
        member.role = Member.Role.MEMBER
        if commit:
            member.save()
        return member


class LoginForm(AuthenticationForm):
    """Django's login form, with the cédula normalised as at registration.

    A value that is not a cédula (a superuser named ``admin``) is looked up as typed.
    """

    def clean_username(self) -> str:
        value = str(self.cleaned_data.get("username") or "").strip()
        try:
            return normalize(value)
        except InvalidCedula:
            return value
