"""The example portal's member: the cédula is the username; some members are leaders."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


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

    @property
    def is_leader(self) -> bool:
        return self.role == self.Role.LEADER
