"""The app's settings: flat ``CENSUS_*`` names with their defaults, read at access time.

Reading at access time (not import time) keeps ``override_settings`` working in tests,
unlike Django-Q2's own ``Conf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from census.captcha.services import CaptchaConfig
from census.limits import MAX_DEFER_SECONDS, MAX_RETRY_AFTER_SECONDS
from census.scraper.base import SITE_URL, ScraperConfig

#: Every setting the app reads, with its default (the table in docs/integration.md mirrors it).
DEFAULTS: dict[str, Any] = {
    # User attribute that holds the cédula (the portal uses the cédula as username).
    "CENSUS_CEDULA_FIELD": "username",
    # Attempts per lookup budget: the initial attempt plus retries.
    "CENSUS_MAX_ATTEMPTS": 3,
    # Delay in seconds before attempt n+1 is delays[min(n-1, len-1)].
    "CENSUS_RETRY_DELAYS": [60, 300, 900],
    # Dotted path of the scraper class.
    "CENSUS_SCRAPER": "census.scraper.playwright.PlaywrightScraper",
    # Dotted path of callable(user) -> bool deciding who may request a manual refresh.
    "CENSUS_IS_LEADER": "census.permissions.is_leader",
    # Dotted path of callable(user, lookup) -> bool: may this user refresh this lookup? Every
    # door asks it (admin action, request_refresh, census_lookup). The default admits whoever
    # CENSUS_IS_LEADER admits; a portal with referrals adds its own rule here.
    "CENSUS_CAN_REFRESH": "census.lookup.refresh.can_refresh",
    # Dotted path of callable(user) -> bool deciding whether a new user gets a lookup (asked
    # in the user's post_save, and by bulk runs for users without one). The default refuses
    # only a superuser without a valid cédula (createsuperuser's "admin").
    "CENSUS_LOOKUP_FOR": "census.eligibility.lookup_for",
    # Dotted path of callable(user) -> bool: is this new user's registration verified? An
    # unverified one's lookup runs only in the site's spare capacity until the portal calls
    # census.mark_verified(user). The default verifies everyone.
    "CENSUS_IS_VERIFIED": "census.eligibility.is_verified",
    # Share of the site's requests refreshes and bulk runs may each use while new
    # registrations wait (census.gate.shares); registrations get the rest, and all of it
    # when these have nothing waiting.
    "CENSUS_CAPACITY_SHARES": {"refresh": 0.2, "bulk": 0.2},
    # Seconds ("10m", "1h") after a lookup ended before request_refresh may start it again.
    "CENSUS_REFRESH_COOLDOWN": "10m",
    # Refreshes one user may request per hour (request_refresh and the admin); None: no cap.
    "CENSUS_REFRESH_PER_HOUR": 30,
    # The census lookup page; its JSON endpoints live on the same origin.
    "CENSUS_SITE_URL": SITE_URL,
    # Chromium binary; None picks Playwright's own Chromium, else /usr/bin/chromium.
    "CENSUS_BROWSER_EXECUTABLE": None,
    # Seconds one lookup may take in the browser; kept below the Django-Q2 task timeout.
    "CENSUS_SCRAPE_TIMEOUT": 90,
    # Browsers at once on one host, across every qcluster and worker (None: the host's CPU
    # count; 0: no limit). Waiting for one is not an attempt.
    "CENSUS_BROWSERS_PER_HOST": None,
    # Minimum seconds between two census requests, across every worker sharing the database.
    "CENSUS_RATE_LIMIT_SECONDS": 5.0,
    # Seconds every worker pauses after a block page or 403 (a 429 uses its Retry-After).
    "CENSUS_BLOCK_BACKOFF_SECONDS": 60.0,
    # The pause doubles with each consecutive block, up to this many seconds.
    "CENSUS_BLOCK_BACKOFF_MAX_SECONDS": 1800.0,
    # Longest wait any Retry-After may impose, whatever its form.
    "CENSUS_MAX_RETRY_AFTER_SECONDS": MAX_RETRY_AFTER_SECONDS,
    # A lookup deferred (gate closed) longer than this in total ends in error (blocked).
    "CENSUS_MAX_DEFER_SECONDS": MAX_DEFER_SECONDS,
    # Dotted path of a captcha solver, callable(site_key, page_url) -> token | None. Wins over
    # CENSUS_CAPTCHA when both are set.
    "CENSUS_CAPTCHA_SOLVER": None,
    # The solving service that gets tokens for the site's reCAPTCHA (docs/captcha.md):
    # {"service": "2captcha" | "capsolver" | "anti-captcha" | "capmonster", "api_key": "...",
    #  "api_url": None (the service's own) or a base URL such as "http://127.0.0.1:8766"}.
    "CENSUS_CAPTCHA": None,
    # With CENSUS_CAPTCHA: solve ahead, before any browser opens (census.captcha.pool), as
    # many as the gate can spend while one is solved. False solves inside each attempt.
    "CENSUS_CAPTCHA_POOL": True,
    # Solves asked of the service per day (the server's local day), or None for no cap. Past
    # it, lookups wait for the next day, uncharged.
    "CENSUS_CAPTCHA_DAILY_LIMIT": None,
    # Seconds the solving service is left alone after it failed (no balance, down, a bad key)
    # before a free probe (getBalance); doubled after each failed probe, up to 15 times.
    "CENSUS_CAPTCHA_PROBE_SECONDS": 60,
    # Seconds a solve inside an attempt (CENSUS_CAPTCHA_SOLVER, or CENSUS_CAPTCHA_POOL False)
    # may take, on top of CENSUS_SCRAPE_TIMEOUT: the page's budget stops while it runs.
    "CENSUS_CAPTCHA_SOLVE_TIMEOUT": 120,
    # Seconds between scheduler runs inside each qcluster worker; 0 turns it off.
    "CENSUS_SCHEDULER_TICK": 1.0,
    # Bytes of error detail kept in raw_response.
    "CENSUS_RAW_RESPONSE_LIMIT": 4000,
    # Bulk runs (census_lookup, re-checks) keep at most this many seconds of work queued:
    # window / CENSUS_RATE_LIMIT_SECONDS lookups (24 at the defaults), fewer when the
    # workers finish fewer than that in a window.
    "CENSUS_BULK_WINDOW_SECONDS": 120.0,
    # Re-check final lookups older than this ("90d", "12h", seconds); None: never.
    "CENSUS_RECHECK_AFTER": None,
    # Local hour (TIME_ZONE) at which the daily re-check starts, when re-checks are on.
    "CENSUS_RECHECK_HOUR": 3,
    # Final status ("found", "not_found", "cancelled", "error", or "any") -> dotted paths of
    # callables run in order once a lookup reaches it: func(lookup_id=..., key=...).
    "CENSUS_FOLLOW_UPS": {},
    # Seconds before follow-up try n+1 is delays[n-1]; a follow-up gets len + 1 tries.
    "CENSUS_FOLLOW_UP_RETRY_DELAYS": [30, 120, 600],
    # Seconds one follow-up may run (its Django-Q2 task timeout; at most the lookup's).
    "CENSUS_FOLLOW_UP_TIMEOUT": 60,
    # Seconds between the sweeper's passes over lost and stalled work, and the grace it
    # gives: a running attempt counts as lost this long past the task timeout, a waiting
    # lookup with no task is queued again this long past its due time (at least 5).
    "CENSUS_SWEEP_SECONDS": 30,
    # Census's successful Django-Q2 task rows older than this are deleted ("3d", "12h",
    # seconds); None keeps them all. Failed rows are always kept.
    "CENSUS_TASK_RETENTION": "3d",
    # Answers in no known shape in a row after which the site counts as changed: lookups
    # are deferred, not charged, and one probe goes out per CENSUS_SITE_PROBE_SECONDS
    # (0: never).
    "CENSUS_SITE_CHANGED_AFTER": 5,
    # Seconds between two probes while the site counts as changed.
    "CENSUS_SITE_PROBE_SECONDS": 300,
    # Snapshots of unexpected pages (one per signature) not seen for this long are deleted
    # ("14d", "12h", seconds); None keeps them.
    "CENSUS_SNAPSHOT_RETENTION": "14d",
    # Bearer token that lets Prometheus read census.observability.metrics.metrics_view
    # (None: only users who may view lookups).
    "CENSUS_METRICS_TOKEN": None,
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float) -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or a plain number of seconds.

    Raises ``ValueError`` (with the accepted forms) for anything else, or a value <= 0.
    """
    raw = str(text).strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _UNITS else (raw, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"{text!r} is not a duration: use a positive number with s, m, h, d or w "
            "(e.g. 30d, 12h)"
        )
    return seconds


#: The solver the scraper calls when only ``CENSUS_CAPTCHA`` is set.
SERVICE_SOLVER = "census.captcha.solver.solve_with_service"

#: Seconds the Django-Q2 task timeout adds on top of the scrape timeout.
TASK_TIMEOUT_MARGIN = 30
#: The shortest sweep period and grace ``CENSUS_SWEEP_SECONDS`` may set.
MIN_SWEEP_SECONDS = 5.0


class CensusSettings:
    """Typed access to the ``CENSUS_*`` settings, resolved on every read."""

    def _get(self, name: str) -> Any:
        return getattr(django_settings, name, DEFAULTS[name])

    @property
    def cedula_field(self) -> str:
        return str(self._get("CENSUS_CEDULA_FIELD"))

    @property
    def max_attempts(self) -> int:
        return int(self._get("CENSUS_MAX_ATTEMPTS"))

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._get("CENSUS_RETRY_DELAYS"))

    @property
    def scraper_path(self) -> str:
        return str(self._get("CENSUS_SCRAPER"))

    @property
    def is_leader(self) -> Callable[[Any], bool]:
        return import_string(self._get("CENSUS_IS_LEADER"))

    @property
    def can_refresh(self) -> Callable[[Any, Any], bool]:
        return import_string(self._get("CENSUS_CAN_REFRESH"))

    @property
    def lookup_for(self) -> Callable[[Any], bool]:
        return import_string(self._get("CENSUS_LOOKUP_FOR"))

    @property
    def is_verified(self) -> Callable[[Any], bool]:
        return import_string(self._get("CENSUS_IS_VERIFIED"))

    @property
    def capacity_shares(self) -> dict[str, float]:
        """Each class's share: the setting's, and the default for a class it does not name
        (unknown classes are the check's)."""
        value = self._get("CENSUS_CAPACITY_SHARES") or {}
        merged = {**DEFAULTS["CENSUS_CAPACITY_SHARES"], **dict(value)}
        return {str(name): float(share) for name, share in merged.items()}

    @property
    def refresh_cooldown(self) -> float:
        value = self._get("CENSUS_REFRESH_COOLDOWN")
        return 0.0 if value in (None, "", 0) else parse_duration(value)

    @property
    def refresh_per_hour(self) -> int | None:
        value = self._get("CENSUS_REFRESH_PER_HOUR")
        return None if value is None else max(int(value), 0)

    @property
    def site_url(self) -> str:
        return str(self._get("CENSUS_SITE_URL"))

    @property
    def browser_executable(self) -> str | None:
        return self._get("CENSUS_BROWSER_EXECUTABLE")

    @property
    def scrape_timeout(self) -> float:
        return float(self._get("CENSUS_SCRAPE_TIMEOUT"))

    @property
    def task_timeout(self) -> int:
        """Django-Q2 task timeout: whole seconds (SIGALRM), above the scrape timeout and a
        solve inside the attempt."""
        return int(self.scrape_timeout + self.solve_in_attempt) + TASK_TIMEOUT_MARGIN

    @property
    def rate_limit_seconds(self) -> float:
        return float(self._get("CENSUS_RATE_LIMIT_SECONDS"))

    @property
    def block_backoff_seconds(self) -> float:
        return float(self._get("CENSUS_BLOCK_BACKOFF_SECONDS"))

    @property
    def block_backoff_max_seconds(self) -> float:
        return float(self._get("CENSUS_BLOCK_BACKOFF_MAX_SECONDS"))

    @property
    def max_retry_after_seconds(self) -> float:
        return float(self._get("CENSUS_MAX_RETRY_AFTER_SECONDS"))

    @property
    def max_defer_seconds(self) -> float:
        return float(self._get("CENSUS_MAX_DEFER_SECONDS"))

    @property
    def captcha_solver_path(self) -> str | None:
        return self._get("CENSUS_CAPTCHA_SOLVER")

    @property
    def captcha(self) -> CaptchaConfig | None:
        """``CENSUS_CAPTCHA`` checked (``ValueError`` when malformed; the system check says
        why at startup), or None when no solving service is configured."""
        value = self._get("CENSUS_CAPTCHA")
        return None if value is None else CaptchaConfig.from_setting(value)

    @property
    def solver_path(self) -> str | None:
        """The solver the scraper calls: ``CENSUS_CAPTCHA_SOLVER``, else the configured
        service's (``SERVICE_SOLVER``), else none."""
        if self.captcha_solver_path:
            return self.captcha_solver_path
        return SERVICE_SOLVER if self._get("CENSUS_CAPTCHA") is not None else None

    @property
    def captcha_pool(self) -> bool:
        """Are tokens solved ahead by the pool? Only for ``CENSUS_CAPTCHA``'s service (a
        ``CENSUS_CAPTCHA_SOLVER`` callable is called inside the attempt)."""
        return (
            self.solver_path == SERVICE_SOLVER
            and not self.captcha_solver_path
            and bool(self._get("CENSUS_CAPTCHA_POOL"))
        )

    @property
    def captcha_daily_limit(self) -> int | None:
        value = self._get("CENSUS_CAPTCHA_DAILY_LIMIT")
        return None if value is None else max(int(value), 0)

    @property
    def captcha_probe_seconds(self) -> float:
        return max(float(self._get("CENSUS_CAPTCHA_PROBE_SECONDS")), 1.0)

    @property
    def solve_in_attempt(self) -> float:
        """Seconds a solve inside the attempt may add to its scrape budget: 0 when none runs
        there (no solver, or the pool solves ahead)."""
        if not self.solver_path or self.captcha_pool:
            return 0.0
        return max(float(self._get("CENSUS_CAPTCHA_SOLVE_TIMEOUT")), 0.0)

    @property
    def scheduler_tick(self) -> float:
        return float(self._get("CENSUS_SCHEDULER_TICK") or 0)

    def scraper_config(self) -> ScraperConfig:
        """The frozen config the pipeline hands the scraper (it reads no settings itself)."""
        return ScraperConfig(
            site_url=self.site_url,
            timeout=self.scrape_timeout,
            executable=self.browser_executable,
            solver_path=self.solver_path,
            solve_timeout=self.solve_in_attempt,
            max_retry_after=self.max_retry_after_seconds,
            browsers_per_host=self.browsers_per_host,
        )

    @property
    def browsers_per_host(self) -> int:
        value = self._get("CENSUS_BROWSERS_PER_HOST")
        return max(os.cpu_count() or 1, 1) if value is None else max(int(value), 0)

    @property
    def bulk_window_seconds(self) -> float:
        return max(float(self._get("CENSUS_BULK_WINDOW_SECONDS")), 0.0)

    @property
    def bulk_capacity(self) -> int:
        """Lookups the gate serves in one bulk window (at least 1; 1000 with no rate limit).

        The gate's bound only: ``census.bulk.window.window_size`` also bounds it by what the
        cluster finishes."""
        rate = self.rate_limit_seconds
        return max(int(self.bulk_window_seconds / rate), 1) if rate > 0 else 1000

    @property
    def cluster_workers(self) -> int:
        """Workers of one qcluster (``Q_CLUSTER['workers']``; Django-Q2's default: the CPUs)."""
        conf = getattr(django_settings, "Q_CLUSTER", {}) or {}
        return max(int(conf.get("workers") or os.cpu_count() or 1), 1)

    @property
    def recheck_after_seconds(self) -> float | None:
        value = self._get("CENSUS_RECHECK_AFTER")
        return None if value in (None, "", 0) else parse_duration(value)

    @property
    def task_retention_seconds(self) -> float | None:
        value = self._get("CENSUS_TASK_RETENTION")
        return None if value in (None, "", 0) else parse_duration(value)

    @property
    def site_changed_after(self) -> int:
        return max(int(self._get("CENSUS_SITE_CHANGED_AFTER") or 0), 0)

    @property
    def site_probe_seconds(self) -> float:
        return max(float(self._get("CENSUS_SITE_PROBE_SECONDS")), 1.0)

    @property
    def snapshot_retention_seconds(self) -> float | None:
        value = self._get("CENSUS_SNAPSHOT_RETENTION")
        return None if value in (None, "", 0) else parse_duration(value)

    @property
    def metrics_token(self) -> str | None:
        return self._get("CENSUS_METRICS_TOKEN") or None

    @property
    def recheck_hour(self) -> int:
        return int(self._get("CENSUS_RECHECK_HOUR")) % 24

    def follow_ups_for(self, status: str) -> tuple[str, ...]:
        """The chain for a final status: its own entries, then those for ``"any"``."""
        chains = self._get("CENSUS_FOLLOW_UPS") or {}
        return (*chains.get(status, ()), *chains.get("any", ()))

    @property
    def follow_up_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._get("CENSUS_FOLLOW_UP_RETRY_DELAYS"))

    @property
    def follow_up_timeout(self) -> int:
        """Bounded by the lookup's task timeout, which the broker's ``retry`` is sized for."""
        return max(1, min(int(self._get("CENSUS_FOLLOW_UP_TIMEOUT")), self.task_timeout))

    @property
    def sweep_seconds(self) -> float:
        """At least ``MIN_SWEEP_SECONDS``: shorter, a slow hook would be taken for a lost one."""
        return max(MIN_SWEEP_SECONDS, float(self._get("CENSUS_SWEEP_SECONDS")))

    @property
    def raw_response_limit(self) -> int:
        """Bounded whatever the setting says: 200 to 20,000 characters."""
        return min(max(int(self._get("CENSUS_RAW_RESPONSE_LIMIT")), 200), 20_000)


settings = CensusSettings()
