"""The URLs of ``tests.allauth_settings``: django-allauth's account pages."""

from django.urls import include, path

urlpatterns = [path("accounts/", include("allauth.urls"))]
