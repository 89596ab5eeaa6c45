"""System checks: settings that would make lookups run twice, retry forever, or go unseen."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from census.captcha.services import CaptchaConfig, is_cleartext_remote, setting_problems
from census.conf import settings
from census.gate.shares import SHARED
from census.models import FINAL_STATUSES

_LOCAL_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


@register(Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[Warning | Error]:
    conf: dict[str, Any] = getattr(django_settings, "Q_CLUSTER", {})
    found: list[Warning | Error] = []
    timeout = conf.get("timeout")
    retry = conf.get("retry", 60)
    task_timeout = settings.task_timeout
    if retry is not None and retry <= task_timeout:
        found.append(
            Warning(
                _(
                    "Q_CLUSTER['retry'] (%(retry)ss) must exceed the census task timeout "
                    "(%(timeout)ss = CENSUS_SCRAPE_TIMEOUT + margin): the broker would deliver "
                    "a running lookup again and run it twice in parallel."
                )
                % {"retry": retry, "timeout": task_timeout},
                hint=_("Set Q_CLUSTER['retry'] to at least %(seconds)s.")
                % {"seconds": task_timeout + 30},
                id="census.W001",
            )
        )
    workers = int(conf.get("workers") or 1)
    queue_limit = int(conf.get("queue_limit") or workers**2)
    backlog = (queue_limit + workers) * task_timeout
    if retry is not None and task_timeout < retry < backlog:
        found.append(
            Warning(
                _(
                    "Q_CLUSTER['retry'] (%(retry)ss) is shorter than (queue_limit "
                    "%(queue_limit)s + workers %(workers)s) x the census task timeout "
                    "(%(timeout)ss) = %(backlog)ss: the ORM broker starts a task's retry clock "
                    "when the cluster prefetches it, so under a backlog of slow lookups a "
                    "prefetched task is delivered again."
                )
                % {
                    "retry": retry,
                    "queue_limit": queue_limit,
                    "workers": workers,
                    "timeout": task_timeout,
                    "backlog": backlog,
                },
                hint=_("Raise 'retry' to at least %(seconds)s, or lower 'queue_limit'.")
                % {"seconds": backlog},
                id="census.W005",
            )
        )
    if timeout is not None and retry is not None and retry <= timeout:
        found.append(
            Warning(
                _(
                    "Q_CLUSTER['retry'] (%(retry)ss) is not above Q_CLUSTER['timeout'] "
                    "(%(timeout)ss): a task still running is delivered again."
                )
                % {"retry": retry, "timeout": timeout},
                hint=_("Keep retry > timeout > CENSUS_SCRAPE_TIMEOUT."),
                id="census.W002",
            )
        )
    if not conf.get("ack_failures") and not conf.get("max_attempts"):
        found.append(
            Warning(
                _(
                    "Q_CLUSTER has neither 'ack_failures' nor 'max_attempts': Django-Q2 re-runs "
                    "a failing task every 'retry' seconds forever. Census tasks opt out per "
                    "task, other tasks of the project do not."
                ),
                hint=_("Set Q_CLUSTER['ack_failures'] = True (or 'max_attempts': 1)."),
                id="census.W004",
            )
        )
    if conf.get("save_limit", 250) < 0 or conf.get("cached") or conf.get("sync"):
        found.append(
            Error(
                _(
                    "Q_CLUSTER 'save_limit' < 0, 'cached' or 'sync' stops Django-Q2 from "
                    "calling result hooks as census needs them."
                ),
                hint=_("Remove 'cached' and 'sync'; keep save_limit >= 0."),
                id="census.E001",
            )
        )
    cache_alias = conf.get("cache", "default")
    backend = getattr(django_settings, "CACHES", {}).get(cache_alias, {}).get("BACKEND", "")
    if backend in _LOCAL_CACHES or not backend:
        found.append(
            Warning(
                _(
                    "The cache %(alias)r is process-local (%(backend)s): qinfo and qmonitor "
                    "will say no cluster is running, and workers cannot share the scheduler "
                    "tick."
                )
                % {"alias": cache_alias, "backend": backend or _("missing")},
                hint=_("Use a database cache (createcachetable) or Redis."),
                id="census.W003",
            )
        )
    return found


@register()
def check_census_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    found: list[Error | Warning] = []
    if settings.max_attempts < 1:
        found.append(Error(_("CENSUS_MAX_ATTEMPTS must be at least 1."), id="census.E002"))
    delays = settings.retry_delays
    if not delays or min(delays) < 0:
        found.append(
            Error(_("CENSUS_RETRY_DELAYS needs at least one delay >= 0 s."), id="census.E003")
        )
    for setting, path in (
        ("CENSUS_SCRAPER", settings.scraper_path),
        ("CENSUS_IS_LEADER", getattr(django_settings, "CENSUS_IS_LEADER", None)),
        ("CENSUS_CAN_REFRESH", getattr(django_settings, "CENSUS_CAN_REFRESH", None)),
        ("CENSUS_LOOKUP_FOR", getattr(django_settings, "CENSUS_LOOKUP_FOR", None)),
        ("CENSUS_IS_VERIFIED", getattr(django_settings, "CENSUS_IS_VERIFIED", None)),
        ("CENSUS_CAPTCHA_SOLVER", settings.captcha_solver_path),
    ):
        if path is None:
            continue
        try:
            import_string(path)
        except ImportError as exc:
            no_browser = isinstance(exc, ModuleNotFoundError) and exc.name == "playwright"
            if setting == "CENSUS_SCRAPER" and no_browser:
                # A web-only host needs no browser; a qcluster host does.
                found.append(
                    Warning(
                        _(
                            "CENSUS_SCRAPER is the Playwright scraper but Playwright is not "
                            "installed: this host can queue lookups but a qcluster here "
                            "cannot run them."
                        ),
                        hint=_('On hosts that run qcluster: pip install "django-census[browser]".'),
                        id="census.W006",
                    )
                )
                continue
            found.append(
                Error(
                    _("%(setting)s = %(path)r cannot be imported: %(error)s")
                    % {"setting": setting, "path": path, "error": exc},
                    id="census.E004",
                )
            )
    durations = (
        ("CENSUS_RECHECK_AFTER", "recheck_after_seconds"),
        ("CENSUS_TASK_RETENTION", "task_retention_seconds"),
        ("CENSUS_SNAPSHOT_RETENTION", "snapshot_retention_seconds"),
        ("CENSUS_REFRESH_COOLDOWN", "refresh_cooldown"),
    )
    for setting, attribute in durations:
        try:
            getattr(settings, attribute)  # a malformed value raises
        except ValueError as exc:
            found.append(Error(f"{setting}: {exc}", id="census.E005"))
    found += _cedula_field_errors()
    found += _follow_up_errors(getattr(django_settings, "CENSUS_FOLLOW_UPS", None) or {})
    found += _captcha_problems(getattr(django_settings, "CENSUS_CAPTCHA", None))
    found += _captcha_number_errors()
    found += _capacity_errors()
    return found


def _capacity_errors() -> list[Error | Warning]:
    """Shares for classes that take none, out of 0..1, or leaving registrations nothing; an
    hourly cap that is no whole number: each would fail in a worker, or starve a class."""
    found: list[Error | Warning] = []
    shares = getattr(django_settings, "CENSUS_CAPACITY_SHARES", None) or {}
    known = {cls.value for cls in SHARED}
    problem = ""
    if not isinstance(shares, dict):
        problem = _("it must be a dict such as {'refresh': 0.2, 'bulk': 0.2}")
    elif set(shares) - known:
        problem = _("only %(known)s take a share, not %(unknown)s") % {
            "known": sorted(known),
            "unknown": sorted(set(shares) - known),
        }
    elif not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
        for v in shares.values()
    ):
        problem = _("each share is a number from 0 to 1")
    elif sum(settings.capacity_shares.values()) >= 1:  # with the defaults it leaves out
        problem = _("the shares add up to 1 or more: registrations would get nothing")
    if problem:
        found.append(
            Error(
                _("CENSUS_CAPACITY_SHARES = %(value)r: %(problem)s.")
                % {"value": shares, "problem": problem},
                hint=_("See docs/capacity.md."),
                id="census.E014",
            )
        )
    cap = getattr(django_settings, "CENSUS_REFRESH_PER_HOUR", 0)
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        found.append(
            Error(
                _("CENSUS_REFRESH_PER_HOUR = %(value)r: it must be a whole number >= 0 or None.")
                % {"value": cap},
                hint=_("See docs/capacity.md."),
                id="census.E014",
            )
        )
    return found


#: The kinds of field a hint for ``CENSUS_CEDULA_FIELD`` offers (text and whole numbers).
_CEDULA_FIELD_TYPES = {
    "CharField",
    "TextField",
    "IntegerField",
    "BigIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
}


def _cedula_field_errors() -> list[Error | Warning]:
    """A ``CENSUS_CEDULA_FIELD`` that is no concrete field of the user model would end every
    lookup ``error/missing_cedula``, and bulk runs and ``cedula_taken`` could not query it:
    say so at startup."""
    try:
        user_model = get_user_model()
    except ImproperlyConfigured:  # django.contrib.auth's own check says why
        return []
    name = settings.cedula_field
    try:
        field = user_model._meta.get_field(name)
    except FieldDoesNotExist:
        problem = _("the user model %(model)s has no field %(name)r")
    else:
        if field.concrete and not field.is_relation:
            return []
        problem = _("%(name)r is a relation of the user model %(model)s, not a value")
    fields = [
        f.name
        for f in user_model._meta.concrete_fields
        if f.get_internal_type() in _CEDULA_FIELD_TYPES and f.name != "password"
    ]
    return [
        Error(
            _("CENSUS_CEDULA_FIELD = %(name)r: %(problem)s; lookups would find no cédula.")
            % {"name": name, "problem": problem % {"model": user_model._meta.label, "name": name}},
            hint=_("Name the field that holds the cédula; the user model's fields: %(fields)s.")
            % {"fields": ", ".join(fields)},
            id="census.E013",
        )
    ]


#: The captcha pool's number settings: (name, None allowed, the smallest value).
CAPTCHA_NUMBERS = (
    ("CENSUS_CAPTCHA_DAILY_LIMIT", True, 0),
    ("CENSUS_CAPTCHA_PROBE_SECONDS", False, 1),
    ("CENSUS_CAPTCHA_SOLVE_TIMEOUT", False, 0),
)


def _captcha_number_errors() -> list[Error | Warning]:
    """A daily limit, probe period or solve timeout that is not a number in range would fail
    in a worker's pool thread, silently: say so at startup."""
    found: list[Error | Warning] = []
    for name, nullable, smallest in CAPTCHA_NUMBERS:
        value = getattr(django_settings, name, None if nullable else smallest)
        if value is None and nullable:
            continue
        whole = name.endswith("LIMIT")
        fits = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and value >= smallest
            and (not whole or value == int(value))
        )
        if not fits:
            kind = "a whole number" if whole else "a number of seconds"
            found.append(
                Error(
                    f"{name} = {value!r}: it must be {kind} >= {smallest}"
                    + (" or None." if nullable else "."),
                    hint="See docs/captcha.md.",
                    id="census.E012",
                )
            )
    pool = getattr(django_settings, "CENSUS_CAPTCHA_POOL", True)
    if not isinstance(pool, bool):
        found.append(
            Error(
                f"CENSUS_CAPTCHA_POOL = {pool!r}: it must be True or False.",
                hint="See docs/captcha.md.",
                id="census.E012",
            )
        )
    return found


#: ``census.captcha.services.setting_problems`` keys -> check ids.
CAPTCHA_CHECK_IDS = {
    "setting": "census.E008",
    "service": "census.E009",
    "api_key": "census.E010",
    "api_url": "census.E011",
}


def _captcha_problems(value: Any) -> list[Error | Warning]:
    """A ``CENSUS_CAPTCHA`` that names no known service, has no key or a base URL without
    scheme and host would fail every solve: say so at startup. Messages name no key."""
    if value is None:
        return []
    errors: list[Error | Warning] = [
        Error(message, hint="See docs/captcha.md.", id=CAPTCHA_CHECK_IDS[key])
        for key, message in setting_problems(value)
    ]
    if errors:
        return errors
    config = CaptchaConfig.from_setting(value)
    found: list[Error | Warning] = []
    if is_cleartext_remote(config.api_url):
        found.append(
            Warning(
                f"CENSUS_CAPTCHA['api_url'] = {config.api_url!r} is plain http to another "
                "host: the API key would travel in clear.",
                hint="Use https, or a loopback address for a local solving service.",
                id="census.W007",
            )
        )
    if settings.captcha_solver_path:
        found.append(
            Warning(
                "CENSUS_CAPTCHA_SOLVER and CENSUS_CAPTCHA are both set: the scraper calls "
                "CENSUS_CAPTCHA_SOLVER, and CENSUS_CAPTCHA is not used.",
                hint="Remove one of them.",
                id="census.W008",
            )
        )
    return found


def _follow_up_errors(chains: Any) -> list[Error | Warning]:
    """A chain keyed by a status that never ends a lookup, or naming a task that cannot be
    imported, would fail only when a lookup finishes: say so at startup."""
    finals = {status.value for status in FINAL_STATUSES} | {"any"}
    if not isinstance(chains, dict):
        return [Error(_("CENSUS_FOLLOW_UPS must map final statuses to lists."), id="census.E006")]
    found: list[Error | Warning] = []
    for status, paths in chains.items():
        if status not in finals or not isinstance(paths, (list, tuple)):
            found.append(
                Error(
                    _("CENSUS_FOLLOW_UPS[%(key)r]: keys are %(finals)s, values lists of paths.")
                    % {"key": status, "finals": ", ".join(sorted(finals))},
                    id="census.E006",
                )
            )
            continue
        for path in paths:
            try:
                import_string(str(path))
            except ImportError as exc:
                found.append(
                    Error(
                        _("CENSUS_FOLLOW_UPS[%(key)r]: %(path)r cannot be imported: %(error)s")
                        % {"key": status, "path": path, "error": exc},
                        id="census.E007",
                    )
                )
    return found
