"""The example portal's member: the cédula is the username; some members are leaders."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from census.cedula import mask


class Member(AbstractUser):
    class Role(models.TextChoices):
        #: Registers and sees their own census status.
        MEMBER = "member", _("Miembro")
        #: Manages referrals; may request a new census lookup.
        LEADER = "leader", _("Líder")

    role = models.CharField(_("rol"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    referred_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="referrals"
    )
    #: When the account was confirmed: by the link mailed at registration, or at creation
    #: for accounts made another way (the admin, ``createsuperuser``; the migration that
    #: added it gave every existing account its time). Empty: registered, not confirmed yet
    #: (``portal.verification``): no census result is shown for them.
    confirmed_at = models.DateTimeField(
        _("cuenta confirmada"), null=True, blank=True, default=timezone.now
    )
    #: A leader's invite code: whoever registers with it is their referral. Set on the first
    #: save as a leader (``ensure_invite_code``); kept if the role changes, but only a
    #: leader's code is accepted.
    invite_code = models.CharField(
        _("código de invitación"), max_length=16, unique=True, null=True, blank=True
    )

    def __str__(self) -> str:
        """Named without the full cédula: the admin's history (``django_admin_log``) and
        every other place that prints a member keep this text."""
        name = self.get_full_name() or _("Miembro %(id)s") % {"id": self.pk}
        return f"{name} ({mask(self.username)})"

    @property
    def is_leader(self) -> bool:
        return self.role == self.Role.LEADER

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.is_leader and not self.invite_code:
            self.invite_code = new_invite_code()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "invite_code"}
        super().save(*args, **kwargs)

    def ensure_invite_code(self) -> str:
        """The leader's invite code, made now for one promoted without ``save`` (an
        ``update()``)."""
        if not self.invite_code:
            self.invite_code = new_invite_code()
            self.save(update_fields=["invite_code"])
        return self.invite_code


#: Invite codes: no 0/O, 1/I/L, so they can be read out and typed.
INVITE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
INVITE_LENGTH = 10  # 31 ** 10: about 49 bits


def new_invite_code() -> str:
    while True:
        code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))
        if not Member.objects.filter(invite_code=code).exists():
            return code


def normalize_invite_code(value: str) -> str:
    """What a member typed, as stored: upper case, spaces and dashes dropped."""
    return "".join(ch for ch in value.upper() if ch not in " -.")


class Notice(models.Model):
    """An in-app notice to a leader: a member they referred got a census answer.

    Written by ``portal.followups.notify_leader`` (a census follow-up); ``key`` is the
    follow-up's idempotency key, so a repeated try finds its notice instead of adding one.
    The text shows the member's name and masked cédula, never the full cédula.
    """

    leader = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="notices", verbose_name=_("líder")
    )
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="+", verbose_name=_("miembro")
    )
    #: The census lookup (``census.CedulaInfo``) whose final status this reports.
    lookup_id = models.BigIntegerField(_("consulta"), db_index=True)
    #: The final status the notice reports: found, cancelled or error.
    status = models.CharField(_("estado"), max_length=16)
    key = models.CharField(_("clave"), max_length=100, unique=True)
    text = models.TextField(_("texto"))
    created_at = models.DateTimeField(_("creado"), auto_now_add=True)
    #: When the email to the leader went out (after the notice committed); empty: not sent
    #: (the leader has no email address, or the sending failed or never happened).
    emailed_at = models.DateTimeField(_("correo enviado"), null=True, blank=True)

    class Meta:
        verbose_name = _("aviso")
        verbose_name_plural = _("avisos")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.text
