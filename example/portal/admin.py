"""Members and leader notices in the admin; census registers ``CedulaInfo`` (with its
follow-ups), Django-Q2 its own task pages."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from portal.models import Member, Notice


@admin.register(Member)
class MemberAdmin(UserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "referred_by", "is_staff")
    list_filter = ("role", *UserAdmin.list_filter)
    raw_id_fields = ("referred_by",)
    fieldsets = (
        *UserAdmin.fieldsets,
        ("Portal", {"fields": ("role", "referred_by")}),
    )


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    """What ``portal.followups.notify_leader`` wrote; ``emailed_at`` empty: no email went out."""

    list_display = ("created_at", "leader", "status", "text", "emailed_at")
    list_filter = ("status",)
    raw_id_fields = ("leader", "member")
    readonly_fields = ("key", "lookup_id", "created_at", "emailed_at")
