"""Members and leader notices in the admin; census registers ``CedulaInfo`` (with its
follow-ups), Django-Q2 its own task pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from portal import verification
from portal.models import Member, Notice


@admin.register(Member)
class MemberAdmin(UserAdmin):
    list_display = (
        "username",
        "first_name",
        "last_name",
        "role",
        "referred_by",
        "confirmed_at",
        "is_staff",
    )
    list_filter = ("role", *UserAdmin.list_filter)
    raw_id_fields = ("referred_by",)
    readonly_fields = ("invite_code",)
    fieldsets = (
        *UserAdmin.fieldsets,
        ("Portal", {"fields": ("role", "referred_by", "confirmed_at", "invite_code")}),
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Staff confirming a member (``confirmed_at`` filled) has the link's effect on census."""
        confirmed = "confirmed_at" in form.changed_data and obj.confirmed_at is not None
        super().save_model(request, obj, form, change)
        if confirmed and change:
            verification.after_confirmation(obj)


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    """What ``portal.followups.notify_leader`` wrote; ``emailed_at`` empty: no email went out."""

    list_display = ("created_at", "leader", "status", "text", "emailed_at")
    list_filter = ("status",)
    raw_id_fields = ("leader", "member")
    readonly_fields = ("key", "lookup_id", "created_at", "emailed_at")
