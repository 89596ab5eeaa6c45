"""The example portal's URLs: the portal pages and the admin (with Django-Q2's pages)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Portal de miembros: administración"
admin.site.site_title = "Portal de miembros"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("portal.urls")),
]
