"""Settings of the example portal. Embedded defaults; environment variables override them.

Environment variables (all optional):

- ``PORTAL_VAR_DIR``: where the database and the log live (default ``<repo>/var``), created
  private (0700; an existing one of ours is made so).
- ``PORTAL_DB``: the SQLite file (default ``$PORTAL_VAR_DIR/portal.sqlite3``).
- ``DATABASE_URL``: a database URL (``postgresql://user@host:5432/portal``) instead of SQLite.
- ``REDIS_URL``: ``redis://host:6379/0`` for Django-Q2's broker and the shared cache instead
  of the ORM broker and the database cache. Without both the portal stays embedded.
- ``CENSUS_LOG_FILE``: the JSON log (default ``$PORTAL_VAR_DIR/census.log``).
- ``PORTAL_LOG_CONSOLE_LEVEL``: console log level (default ``INFO``).
- ``PORTAL_SECRET_KEY``: Django's ``SECRET_KEY``. Required, unless ``PORTAL_DEBUG`` or
  ``PORTAL_DEMO`` is on: then a fixed development key is used (and refused otherwise). The
  development key is refused whenever an allowed host is not loopback (``localhost``,
  ``127.0.0.1``, ``[::1]``, and the test client's ``testserver``): it is published, and
  Django-Q2 signs its task pickles with it.
- ``PORTAL_DEBUG`` (``1``/``0``; default off): Django's ``DEBUG``.
- ``PORTAL_DEMO`` (``1``/``0``; default off): the demo (``./demo``, ``manage.py
  census_demo``, which turn it on) may run without ``PORTAL_SECRET_KEY``. DEBUG stays off.
- ``PORTAL_ALLOWED_HOSTS`` (commas): default ``localhost,127.0.0.1,[::1]``, plus
  ``testserver`` (Django's test client, which the demo registers members with) when
  ``PORTAL_DEBUG`` or ``PORTAL_DEMO`` is on.
- ``PORTAL_HTTPS`` (``1``/``0``; default off): behind a TLS-terminating proxy that sets
  ``X-Forwarded-Proto`` (and drops the client's) and appends the client's address to
  ``X-Forwarded-For``: SSL redirect, HSTS, secure cookies, the proxy's headers trusted (the
  registration throttle counts the last ``X-Forwarded-For`` address, not the proxy's).
  ``PORTAL_HSTS_SECONDS``: HSTS max-age (default one year).
- ``PORTAL_Q_WORKERS``: qcluster workers (default 2).
- ``PORTAL_REFRESH_THROTTLE``: ``N,SECONDS`` refresh requests per leader (default ``10,600``),
  or ``off``.
- ``PORTAL_REGISTRATION_THROTTLE``: ``N,SECONDS`` registration POSTs per client address
  (default ``10,3600``), or ``off``; ``PORTAL_REGISTRATION_THROTTLE_TOTAL``: the same from
  everyone together (default ``200,3600``).
- ``PORTAL_VERIFY_WITHIN``: seconds the mailed confirmation link is valid (default
  ``172800``, 48 h).
- ``PORTAL_EMAIL_BACKEND``: Django's ``EMAIL_BACKEND`` (default the console: mails are
  printed by the process that sends them); ``PORTAL_EMAIL_HOST``/``PORTAL_EMAIL_PORT``
  for the SMTP backend, ``PORTAL_DEFAULT_FROM_EMAIL`` the sender.
- ``CENSUS_SCRAPER``, ``CENSUS_SITE_URL`` (default: the simulator on ``127.0.0.1:8765``),
  ``CENSUS_BROWSER_EXECUTABLE``, ``CENSUS_SCRAPE_TIMEOUT``, ``CENSUS_RATE_LIMIT_SECONDS``,
  ``CENSUS_RETRY_DELAYS`` (seconds, commas), ``CENSUS_MAX_ATTEMPTS``,
  ``CENSUS_SCHEDULER_TICK``, ``CENSUS_BLOCK_BACKOFF_SECONDS``,
  ``CENSUS_BLOCK_BACKOFF_MAX_SECONDS``, ``CENSUS_BULK_WINDOW_SECONDS``,
  ``CENSUS_RECHECK_AFTER`` (e.g. ``90d``), ``CENSUS_RECHECK_HOUR``, and
  ``CENSUS_CAPTCHA_SERVICE`` / ``CENSUS_CAPTCHA_API_KEY`` / ``CENSUS_CAPTCHA_API_URL``
  (``CENSUS_CAPTCHA``'s keys; unset: no solving service): the census settings of the
  same name (defaults: census's own).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from census.conf import DEFAULTS, TASK_TIMEOUT_MARGIN
from example_site.log_config import configure_structlog, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BASE_DIR.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", REPO_DIR / "var"))


def private_dir(path: Path) -> Path:
    """``path`` created 0700 (the database, the log and the demo's outputs live there); one
    that exists and is ours loses group and other access. One of another user's is left."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    status = path.stat()
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        path.chmod(0o700)
    return path


private_dir(VAR_DIR)


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _flag(name: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (unset: off)."""
    value = (_env(name) or "0").lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(
        f"{name} must be 1 or 0 (or true/false, yes/no, on/off), not {value!r}"
    )


def _throttle(name: str, default: tuple[int, int]) -> tuple[int, int] | None:
    """``N,SECONDS`` or ``off`` from the environment variable ``name``."""
    value = _env(name)
    if value is None:
        return default
    if value.lower() == "off":
        return None
    try:
        requests, seconds = (int(n) for n in value.split(","))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be N,SECONDS or off, not {value!r}") from None
    return requests, seconds


#: Only for DEBUG or the demo; a deployment sets PORTAL_SECRET_KEY.
DEVELOPMENT_SECRET_KEY = "example-portal-development-key-not-secret"

DEBUG = _flag("PORTAL_DEBUG")
PORTAL_DEMO = _flag("PORTAL_DEMO")
SECRET_KEY = _env("PORTAL_SECRET_KEY") or ""
if not (DEBUG or PORTAL_DEMO):
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "PORTAL_SECRET_KEY is not set. A deployment of the example portal needs its own "
            "secret key, e.g. PORTAL_SECRET_KEY=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'). To run it on your machine with the "
            "development key instead, set PORTAL_DEBUG=1 (or PORTAL_DEMO=1: no DEBUG)."
        )
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY:
        raise ImproperlyConfigured(
            "PORTAL_SECRET_KEY is the example's public development key; set a secret one."
        )
SECRET_KEY = SECRET_KEY or DEVELOPMENT_SECRET_KEY
ALLOWED_HOSTS = [
    host.strip()
    for host in (
        _env("PORTAL_ALLOWED_HOSTS")
        or "localhost,127.0.0.1,[::1]" + (",testserver" if DEBUG or PORTAL_DEMO else "")
    ).split(",")
    if host.strip()
]
#: Names that reach only this machine: the development key is refused for any other. (A
#: server bound to a public address still answers a forged ``Host: localhost``; the rule
#: catches the deployment that names its public host, which is what a deployment does.)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "testserver"})
if SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    public = [host for host in ALLOWED_HOSTS if host.lower() not in LOOPBACK_HOSTS]
    if public:
        raise ImproperlyConfigured(
            f"The example's public development key may serve only loopback hosts, and "
            f"PORTAL_ALLOWED_HOSTS names {', '.join(public)}: whoever knows the key can forge "
            "sessions and, with write access to the broker, run code in the workers (Django-Q2 "
            "signs its tasks with it). Set PORTAL_SECRET_KEY for a public host."
        )

# -- HTTPS ------------------------------------------------------------------------------------
# PORTAL_HTTPS=1: the portal is served over HTTPS by a proxy that terminates TLS and sets
# X-Forwarded-Proto (dropping any the client sent). Plain HTTP is redirected, browsers are
# told to use HTTPS only (HSTS, this host and its subdomains, preload allowed), and the
# session and CSRF cookies travel over HTTPS only. ``check --deploy`` is then clean.
PORTAL_HTTPS = _flag("PORTAL_HTTPS")
# The same proxy appends the client's address to X-Forwarded-For: the registration throttle
# counts that address (portal.throttle.client_address), not the proxy's REMOTE_ADDR.
PORTAL_TRUST_X_FORWARDED_FOR = PORTAL_HTTPS
if PORTAL_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = int(_env("PORTAL_HSTS_SECONDS") or 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "census",
    # The census_simulator command (the demo and docs/example.md run it).
    "census.testing",
    "portal",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example_site.urls"
WSGI_APPLICATION = "example_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# The embedded default: SQLite in WAL mode, which the web server, the demo and every qcluster
# process share. IMMEDIATE transactions take the write lock up front, so concurrent writers
# wait (timeout) instead of failing with "database is locked" when a read turns into a write.
# DATABASE_URL (e.g. postgresql://portal@db-host/portal; the ``postgres`` extra) replaces it.
if _env("DATABASE_URL"):
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(_env("DATABASE_URL"), conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _env("PORTAL_DB") or str(VAR_DIR / "portal.sqlite3"),
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A cache every process shares: qinfo/qmonitor read the cluster's status from it, and the
# census scheduler tick is claimed through it. REDIS_URL (the ``redis`` extra) puts it, and
# Django-Q2's broker, on Redis; else the database cache (``manage.py createcachetable``).
REDIS_URL = _env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "census-portal",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "census_cache",
        }
    }

AUTH_USER_MODEL = "portal.Member"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"

# -- portal -----------------------------------------------------------------------------------
# At most this many refresh requests per leader in any window of this many seconds
# (portal/throttle.py); over it, HTTP 429. ``None`` turns the throttle off.
PORTAL_REFRESH_THROTTLE = _throttle("PORTAL_REFRESH_THROTTLE", (10, 600))
# Registration POSTs (valid or not) per client address, and from everyone together, in any
# window of that many seconds; over either, HTTP 429 and nothing is created.
PORTAL_REGISTRATION_THROTTLE = _throttle("PORTAL_REGISTRATION_THROTTLE", (10, 3600))
PORTAL_REGISTRATION_THROTTLE_TOTAL = _throttle("PORTAL_REGISTRATION_THROTTLE_TOTAL", (200, 3600))
# A registration is confirmed by a mailed link (portal.verification), valid this long.
PORTAL_VERIFY_WITHIN = int(_env("PORTAL_VERIFY_WITHIN") or 48 * 3600)

# Confirmation links and leader notices (portal.followups.notify_leader) are emailed through
# Django's email API; the example prints them on the console of the process that sends them
# (runserver, the qcluster) unless PORTAL_EMAIL_BACKEND names another backend.
EMAIL_BACKEND = _env("PORTAL_EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = _env("PORTAL_EMAIL_HOST") or "localhost"
EMAIL_PORT = int(_env("PORTAL_EMAIL_PORT") or 25)
DEFAULT_FROM_EMAIL = _env("PORTAL_DEFAULT_FROM_EMAIL") or "Portal de miembros <portal@localhost>"

LANGUAGE_CODE = "es-co"
TIME_ZONE = "America/Bogota"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# -- census -----------------------------------------------------------------------------------
CENSUS_IS_LEADER = "portal.leaders.is_leader"
# A registration not confirmed by its mailed link yet has its lookup run in the site's spare
# capacity only; portal.verification.confirm calls census.mark_verified once it is.
CENSUS_IS_VERIFIED = "portal.verification.is_verified"
# Leaders refresh only their referrals (and themselves); superusers and holders of
# census.refresh_cedulainfo anyone. Census's admin action and census_lookup ask it too.
CENSUS_CAN_REFRESH = "portal.leaders.can_refresh"
# When a referred member's lookup ends found, cancelled or error, their leader gets a notice
# on their profile and an email: a follow-up, run once, after the status committed.
CENSUS_FOLLOW_UPS = {
    "found": ["portal.followups.notify_leader"],
    "cancelled": ["portal.followups.notify_leader"],
    "error": ["portal.followups.notify_leader"],
}
CENSUS_SCRAPER = _env("CENSUS_SCRAPER") or DEFAULTS["CENSUS_SCRAPER"]
CENSUS_SITE_URL = _env("CENSUS_SITE_URL") or "http://127.0.0.1:8765/consultar/"
# The captcha-solving service (docs/captcha.md): a lookup against the live site needs one.
if _env("CENSUS_CAPTCHA_SERVICE"):
    CENSUS_CAPTCHA = {
        "service": _env("CENSUS_CAPTCHA_SERVICE"),
        "api_key": _env("CENSUS_CAPTCHA_API_KEY"),
        "api_url": _env("CENSUS_CAPTCHA_API_URL") or None,
    }
CENSUS_BROWSER_EXECUTABLE = _env("CENSUS_BROWSER_EXECUTABLE")
CENSUS_SCRAPE_TIMEOUT = float(_env("CENSUS_SCRAPE_TIMEOUT") or DEFAULTS["CENSUS_SCRAPE_TIMEOUT"])
CENSUS_RATE_LIMIT_SECONDS = float(
    _env("CENSUS_RATE_LIMIT_SECONDS") or DEFAULTS["CENSUS_RATE_LIMIT_SECONDS"]
)
CENSUS_MAX_ATTEMPTS = int(_env("CENSUS_MAX_ATTEMPTS") or DEFAULTS["CENSUS_MAX_ATTEMPTS"])
CENSUS_RETRY_DELAYS = [
    float(d)
    for d in (_env("CENSUS_RETRY_DELAYS") or ",".join(map(str, DEFAULTS["CENSUS_RETRY_DELAYS"])))
    .replace(" ", "")
    .split(",")
]
CENSUS_SCHEDULER_TICK = float(_env("CENSUS_SCHEDULER_TICK") or DEFAULTS["CENSUS_SCHEDULER_TICK"])
CENSUS_BLOCK_BACKOFF_SECONDS = float(
    _env("CENSUS_BLOCK_BACKOFF_SECONDS") or DEFAULTS["CENSUS_BLOCK_BACKOFF_SECONDS"]
)
CENSUS_BLOCK_BACKOFF_MAX_SECONDS = float(
    _env("CENSUS_BLOCK_BACKOFF_MAX_SECONDS") or DEFAULTS["CENSUS_BLOCK_BACKOFF_MAX_SECONDS"]
)
CENSUS_BULK_WINDOW_SECONDS = float(
    _env("CENSUS_BULK_WINDOW_SECONDS") or DEFAULTS["CENSUS_BULK_WINDOW_SECONDS"]
)
CENSUS_RECHECK_AFTER = _env("CENSUS_RECHECK_AFTER") or DEFAULTS["CENSUS_RECHECK_AFTER"]
CENSUS_RECHECK_HOUR = int(_env("CENSUS_RECHECK_HOUR") or DEFAULTS["CENSUS_RECHECK_HOUR"])

# -- Django-Q2 --------------------------------------------------------------------------------
# Census passes its own per-task timeout (scrape timeout + margin); the cluster's is above it
# for every other task, and ``retry`` above both so a running lookup is never redelivered.
_CENSUS_TASK_TIMEOUT = int(CENSUS_SCRAPE_TIMEOUT) + TASK_TIMEOUT_MARGIN
_Q_WORKERS = int(_env("PORTAL_Q_WORKERS") or 2)
Q_CLUSTER = {
    "name": "census-portal",
    "workers": _Q_WORKERS,
    # Prefetch one task per worker: the ORM broker's retry clock starts at the prefetch.
    "queue_limit": _Q_WORKERS,
    "timeout": _CENSUS_TASK_TIMEOUT + 30,
    # Longer than a prefetched task can wait behind slow lookups (census.W005).
    "retry": 2 * _Q_WORKERS * _CENSUS_TASK_TIMEOUT + 60,
    # Census schedules its own retries: a failed task is never delivered again by the broker.
    "ack_failures": True,
    "max_attempts": 1,
    # A retry missed while the cluster was down runs once, not once per missed period.
    "catch_up": False,
    # Keep every task result: the admin's Successful/Failed tasks pages are the history.
    "save_limit": 0,
    "label": "Django Q2",
}
if REDIS_URL:
    # Django-Q2's own recommendation for production: the Redis broker.
    Q_CLUSTER["redis"] = REDIS_URL
else:
    # Queued lookups persist in the database until a cluster runs them.
    Q_CLUSTER["orm"] = "default"

# -- logging ----------------------------------------------------------------------------------
LOG_FILE = Path(_env("CENSUS_LOG_FILE") or VAR_DIR / "census.log")
configure_structlog()
LOGGING = logging_config(LOG_FILE, console_level=_env("PORTAL_LOG_CONSOLE_LEVEL") or "INFO")
