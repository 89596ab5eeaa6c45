"""``tests.settings`` with django-allauth's sign-up and census's account adapter, as a portal
sets them up (docs/allauth.md): for the processes that tests/integration/test_allauth_signup.py
starts (``runserver``, ``qcluster``, ``migrate``, ``createsuperuser``). The suite's own
settings stay without allauth."""

from __future__ import annotations

from tests.settings import *  # noqa: F403 (the suite's settings, then allauth's lines)
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "allauth", "allauth.account"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ROOT_URLCONF = "tests.allauth_urls"

# The cédula is the username (CENSUS_CEDULA_FIELD's default): members sign up and log in
# with it; no email address is asked for, so none is verified.
ACCOUNT_ADAPTER = "census.contrib.allauth.CensusAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
