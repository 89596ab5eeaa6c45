"""Members in the admin; census registers ``CedulaInfo``, Django-Q2 its own task pages."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from portal.models import Member


@admin.register(Member)
class MemberAdmin(UserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "referred_by", "is_staff")
    list_filter = ("role", *UserAdmin.list_filter)
    raw_id_fields = ("referred_by",)
    fieldsets = (
        *UserAdmin.fieldsets,
        ("Portal", {"fields": ("role", "referred_by")}),
    )
