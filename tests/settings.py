"""Settings for the test suite and for the qcluster subprocesses the integration tests start."""

from __future__ import annotations

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CENSUS_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# One database file per test run (parallel runs must not share it); subprocesses get the
# path through CENSUS_TEST_DB.
DB_PATH = os.environ.get("CENSUS_TEST_DB", str(VAR_DIR / f"test-{os.getpid()}.sqlite3"))

SECRET_KEY = "census-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "America/Bogota"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_q",
    "census",
    # The census_simulator command (tests/unit/test_simulator.py runs it).
    "census.testing",
    "portal",
]
AUTH_USER_MODEL = "portal.Member"
# As the example portal: Colombian Spanish, from census's es catalog (English msgids).
LANGUAGE_CODE = "es-co"
USE_I18N = True
CENSUS_IS_LEADER = "portal.leaders.is_leader"
# Leaders refresh only their referrals (and themselves); superusers and holders of
# census.refresh_cedulainfo anyone. Census's admin action and census_lookup ask it too.
CENSUS_CAN_REFRESH = "portal.leaders.can_refresh"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
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

# CENSUS_TEST_DATABASE=postgres runs the suite on PostgreSQL (CENSUS_TEST_POSTGRES: a libpq
# URL of a maintenance database; ./test finds or starts the server) and
# CENSUS_TEST_BROKER=redis puts Django-Q2's broker and the cache on Redis
# (CENSUS_TEST_REDIS). The default is the embedded setup: SQLite, the ORM broker.
ON_POSTGRES = os.environ.get("CENSUS_TEST_DATABASE", "sqlite") == "postgres"
ON_REDIS = os.environ.get("CENSUS_TEST_BROKER", "orm") == "redis"

if ON_POSTGRES:
    import dj_database_url

    _maintenance = dj_database_url.parse(
        os.environ.get("CENSUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    # Subprocesses get the test database's name through CENSUS_TEST_DB, like the SQLite path.
    _test_name = os.environ.get("CENSUS_TEST_DB") or f"test_census_{os.getpid()}"
    DATABASES = {
        "default": {
            **_maintenance,
            "NAME": os.environ.get("CENSUS_TEST_DB") or _maintenance["NAME"],
            "TEST": {"NAME": _test_name},
        }
    }
else:
    # A file database (WAL) so that real qcluster subprocesses see what the tests write.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DB_PATH,
            "TEST": {"NAME": DB_PATH},
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

REDIS_URL = os.environ.get("CENSUS_TEST_REDIS", "redis://127.0.0.1:6379/5")
if ON_REDIS:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # One namespace per test run: parallel runs share the server.
            "KEY_PREFIX": os.environ.setdefault(
                "CENSUS_TEST_REDIS_PREFIX", f"census-tests-{os.getpid()}"
            ),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "census_cache",
        }
    }

Q_CLUSTER = {
    # One queue per test run (the Redis list is named after the cluster).
    # setdefault: qcluster subprocesses inherit the environment, hence the same names.
    "name": os.environ.setdefault("CENSUS_TEST_QUEUE", f"census-tests-{os.getpid()}")
    if ON_REDIS
    else "census-tests",
    "workers": 2,
    "queue_limit": 2,
    "timeout": int(os.environ.get("CENSUS_Q_TIMEOUT", 40)),
    # Above (queue_limit + workers) x the task timeout (census.W005); the fault suite
    # lowers it on purpose to make the broker deliver tasks twice.
    "retry": int(
        os.environ.get("CENSUS_Q_RETRY", 4 * int(os.environ.get("CENSUS_Q_TIMEOUT", 40)) + 20)
    ),
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 0,
    "poll": 0.2,
    "guard_cycle": 0.5,
    "daemonize_workers": False,
}
if ON_REDIS:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

CENSUS_SCRAPER = os.environ.get("CENSUS_SCRAPER", "census.testing.fake.FakeScraper")
CENSUS_RETRY_DELAYS = [float(d) for d in os.environ.get("CENSUS_RETRY_DELAYS", "2,3,4").split(",")]
# Follow-up chains for real-process tests (tests/integration/test_followups_cluster.py);
# none otherwise.
if os.environ.get("CENSUS_TEST_FOLLOW_UPS_JSON"):
    CENSUS_FOLLOW_UPS = json.loads(os.environ["CENSUS_TEST_FOLLOW_UPS_JSON"])
CENSUS_FOLLOW_UP_RETRY_DELAYS = [
    float(d) for d in os.environ.get("CENSUS_FOLLOW_UP_RETRY_DELAYS", "1,2,3").split(",") if d
]
CENSUS_FOLLOW_UP_TIMEOUT = int(os.environ.get("CENSUS_FOLLOW_UP_TIMEOUT", 60))
CENSUS_RATE_LIMIT_SECONDS = float(os.environ.get("CENSUS_RATE_LIMIT_SECONDS", "0"))
CENSUS_SCRAPE_TIMEOUT = float(os.environ.get("CENSUS_SCRAPE_TIMEOUT", "10"))
CENSUS_SCHEDULER_TICK = float(os.environ.get("CENSUS_SCHEDULER_TICK", "0.25"))
# No pause after a block unless a test asks for one (the breaker's own tests do).
CENSUS_BLOCK_BACKOFF_SECONDS = float(os.environ.get("CENSUS_BLOCK_BACKOFF_SECONDS", "0"))
# The fault-injection suite (tests/integration/test_faults.py) and the bulk run's command process
# (tests/integration/test_bulk_cluster.py) set these.
for _name in (
    "CENSUS_BULK_WINDOW_SECONDS",
    "CENSUS_BLOCK_BACKOFF_MAX_SECONDS",
    "CENSUS_MAX_RETRY_AFTER_SECONDS",
    "CENSUS_MAX_DEFER_SECONDS",
    "CENSUS_SITE_CHANGED_AFTER",
    "CENSUS_SITE_PROBE_SECONDS",
):
    if os.environ.get(_name):
        globals()[_name] = float(os.environ[_name])
# The capacity tests' shares (tests/integration/test_capacity_cluster.py), as JSON.
if os.environ.get("CENSUS_CAPACITY_SHARES"):
    CENSUS_CAPACITY_SHARES = json.loads(os.environ["CENSUS_CAPACITY_SHARES"])
# Real-process tests sweep every 10 s (tests/clusters.py): a killed worker's attempt is
# found lost 10 s past the task timeout instead of 30, and sweeps come three times as often.
if os.environ.get("CENSUS_SWEEP_SECONDS"):
    CENSUS_SWEEP_SECONDS = float(os.environ["CENSUS_SWEEP_SECONDS"])
if os.environ.get("CENSUS_BROWSERS_PER_HOST"):
    CENSUS_BROWSERS_PER_HOST = int(os.environ["CENSUS_BROWSERS_PER_HOST"])
if os.environ.get("CENSUS_MAX_ATTEMPTS"):
    CENSUS_MAX_ATTEMPTS = int(os.environ["CENSUS_MAX_ATTEMPTS"])
CENSUS_SITE_URL = os.environ.get("CENSUS_SITE_URL", "http://127.0.0.1:9/consultar/")
# A solving service for real-process tests (tests/integration/test_captcha_cluster.py).
if os.environ.get("CENSUS_TEST_CAPTCHA_JSON"):
    CENSUS_CAPTCHA = json.loads(os.environ["CENSUS_TEST_CAPTCHA_JSON"])
if os.environ.get("CENSUS_CAPTCHA_PROBE_SECONDS"):
    CENSUS_CAPTCHA_PROBE_SECONDS = float(os.environ["CENSUS_CAPTCHA_PROBE_SECONDS"])
CENSUS_FAKE_STATE_DIR = os.environ.get("CENSUS_FAKE_STATE_DIR") or None
if "CENSUS_FAKE_SCRIPT" in os.environ:
    import json

    CENSUS_FAKE_SCRIPT = json.loads(os.environ["CENSUS_FAKE_SCRIPT"])

# The portal's leader notices as a follow-up, for the processes of the tests that ask for it
# (tests/integration/test_profile_browser.py's qcluster): set globally, every test that lists queued
# tasks would see follow-ups too. Their emails go to files in CENSUS_TEST_EMAIL_DIR.
if os.environ.get("CENSUS_TEST_FOLLOW_UPS"):
    CENSUS_FOLLOW_UPS = {
        status: ["portal.followups.notify_leader"] for status in ("found", "cancelled", "error")
    }
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ.get("CENSUS_TEST_EMAIL_DIR", str(VAR_DIR / "test-mail"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CENSUS_LOG_LEVEL", "WARNING")},
}

# Integration tests read the events a qcluster subprocess wrote, one JSON object per line:
# census's own structlog lines, or with CENSUS_TEST_PORTAL_LOGGING the example portal's whole
# logging set-up (Django's, Django-Q2's and the portal's stdlib lines too, as JSON).
if os.environ.get("CENSUS_JSON_LOG") and os.environ.get("CENSUS_TEST_PORTAL_LOGGING"):
    from example_site.log_config import configure_structlog, logging_config

    configure_structlog()
    LOGGING = logging_config(Path(os.environ["CENSUS_JSON_LOG"]), console_level="INFO")
elif os.environ.get("CENSUS_JSON_LOG"):
    import structlog

    from census.logs import scrub_cedula

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_cedula,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(
            file=open(os.environ["CENSUS_JSON_LOG"], "a", buffering=1)  # noqa: SIM115 (process-long)
        ),
    )
