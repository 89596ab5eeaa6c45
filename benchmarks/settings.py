"""Settings for the benchmarks and the qclusters they start: the test suite's, plus the
example portal's URLs (the registration view), the worker count from the environment, and
the production scheduler tick unless a measurement sets another. A solving service comes as in
tests/settings.py (``CENSUS_TEST_CAPTCHA_JSON``); the captcha measurement also switches the
token pool (``CENSUS_CAPTCHA_POOL``: 0 solves inside each attempt) and the in-attempt solve's
timeout (``CENSUS_CAPTCHA_SOLVE_TIMEOUT``)."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import Q_CLUSTER

ROOT_URLCONF = "example_site.urls"
LOGIN_URL = "portal:login"
# The registration measurement posts the portal's form from one address many times: the
# portal's throttles would refuse it, and its confirmation mail goes to memory.
PORTAL_REGISTRATION_THROTTLE = None
PORTAL_REGISTRATION_THROTTLE_TOTAL = None
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Django's default hasher spends ~0.3 s per registration, which would hide census's share.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CENSUS_SCHEDULER_TICK = float(os.environ.get("CENSUS_SCHEDULER_TICK", "1"))
# Django's default (0: a connection per request, closed by anything that calls
# close_old_connections, as Django-Q2's ORM broker does on every call); a comparison sets it.
if os.environ.get("CENSUS_BENCH_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["CENSUS_BENCH_CONN_MAX_AGE"])  # noqa: F405

if os.environ.get("CENSUS_CAPTCHA_POOL"):
    CENSUS_CAPTCHA_POOL = os.environ["CENSUS_CAPTCHA_POOL"].lower() not in ("0", "false", "no")
if os.environ.get("CENSUS_CAPTCHA_SOLVE_TIMEOUT"):
    CENSUS_CAPTCHA_SOLVE_TIMEOUT = float(os.environ["CENSUS_CAPTCHA_SOLVE_TIMEOUT"])

_workers = int(os.environ.get("CENSUS_BENCH_WORKERS", "2"))
Q_CLUSTER = {
    **Q_CLUSTER,
    "workers": _workers,
    "queue_limit": _workers,
    # Above (queue_limit + workers) x the task timeout (census.W005): a measurement whose
    # census task timeout is longer (a solve inside the attempt) raises CENSUS_Q_TIMEOUT to
    # it, or sets CENSUS_Q_RETRY, as in tests/settings.py.
    "retry": int(os.environ.get("CENSUS_Q_RETRY", 2 * _workers * Q_CLUSTER["timeout"] + 20)),
}
