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
from portal.models import Member, normalize_invite_code

INVALID_CEDULA = (
    "La cédula no es válida: escribe solo el número, de 3 a 10 dígitos "
    "(puedes usar puntos, comas, espacios o guiones)."
)
#: One answer for every code that is not a leader's: no code, a member's, a former leader's.
UNKNOWN_INVITE = "Este código de invitación no es válido."


def _cedula(value: str) -> str:
    """The canonical cédula, or a form error (in Spanish: ``InvalidCedula``'s text is not)."""
    try:
        return normalize(value)
    except InvalidCedula:
        raise forms.ValidationError(INVALID_CEDULA, code="invalid_cedula") from None


class RegistrationForm(BaseUserCreationForm):
    """Cédula, name, e-mail address, password and, optionally, a leader's invite code.

    Nothing in it says whether the cédula has an account: it is not checked for duplicates
    here (``portal.registration`` decides what a valid form does), and the invite code has
    one error for every code that is not a leader's.
    """

    invite_code = forms.CharField(
        label="Código de invitación",
        required=False,
        max_length=32,
        help_text="Opcional: el código que te dio el líder que te invitó.",
    )

    class Meta:
        model = Member
        fields = ("username", "first_name", "last_name", "email")
        labels = {
            "username": "Cédula",
            "first_name": "Nombres",
            "last_name": "Apellidos",
            "email": "Correo electrónico",
        }
        help_texts = {
            "username": "Solo el número, por ejemplo 1.020.304.050.",
            "email": "Te enviamos un enlace para activar tu cuenta.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["first_name"].required = True
        self.fields["email"].required = True
        self.fields["username"].widget.attrs.update(inputmode="numeric", autocomplete="username")

    def clean_username(self) -> str:
        return _cedula(self.cleaned_data.get("username", ""))

    def validate_unique(self) -> None:
        """No "already exists" error: an existing cédula is answered as a new one."""

    def clean_invite_code(self) -> Member | None:
        value = normalize_invite_code(self.cleaned_data.get("invite_code", ""))
        if not value:
            return None
        leader = Member.objects.filter(invite_code=value, role=Member.Role.LEADER).first()
        if leader is None:
            raise forms.ValidationError(UNKNOWN_INVITE, code="unknown_invite")
        return leader

    def save(self, commit: bool = True) -> Member:
        """A new, unconfirmed member (``confirmed_at`` empty until the mailed link)."""
        member: Member = super().save(commit=False)
        member.referred_by = self.cleaned_data.get("invite_code")
        member.role = Member.Role.MEMBER
        member.confirmed_at = None
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
