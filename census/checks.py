"""System checks: settings that would make lookups run twice, retry forever, or go unseen."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from census.conf import settings

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
                f"Q_CLUSTER['retry'] ({retry}s) must exceed the census task timeout "
                f"({task_timeout}s = CENSUS_SCRAPE_TIMEOUT + margin): the broker would deliver "
                "a running lookup again and run it twice in parallel.",
                hint=f"Set Q_CLUSTER['retry'] to at least {task_timeout + 30}.",
                id="census.W001",
            )
        )
    workers = int(conf.get("workers") or 1)
    queue_limit = int(conf.get("queue_limit") or workers**2)
    backlog = (queue_limit + workers) * task_timeout
    if retry is not None and task_timeout < retry < backlog:
        found.append(
            Warning(
                f"Q_CLUSTER['retry'] ({retry}s) is shorter than (queue_limit {queue_limit} + "
                f"workers {workers}) x the census task timeout ({task_timeout}s) = {backlog}s: "
                "the ORM broker starts a task's retry clock when the cluster prefetches it, so "
                "under a backlog of slow lookups a prefetched task is delivered again.",
                hint=f"Raise 'retry' to at least {backlog}, or lower 'queue_limit'.",
                id="census.W005",
            )
        )
    if timeout is not None and retry is not None and retry <= timeout:
        found.append(
            Warning(
                f"Q_CLUSTER['retry'] ({retry}s) is not above Q_CLUSTER['timeout'] ({timeout}s): "
                "a task still running is delivered again.",
                hint="Keep retry > timeout > CENSUS_SCRAPE_TIMEOUT.",
                id="census.W002",
            )
        )
    if not conf.get("ack_failures") and not conf.get("max_attempts"):
        found.append(
            Warning(
                "Q_CLUSTER has neither 'ack_failures' nor 'max_attempts': Django-Q2 re-runs a "
                "failing task every 'retry' seconds forever. Census tasks opt out per task, "
                "other tasks of the project do not.",
                hint="Set Q_CLUSTER['ack_failures'] = True (or 'max_attempts': 1).",
                id="census.W004",
            )
        )
    if conf.get("save_limit", 250) < 0 or conf.get("cached") or conf.get("sync"):
        found.append(
            Error(
                "Q_CLUSTER 'save_limit' < 0, 'cached' or 'sync' stops Django-Q2 from calling "
                "result hooks as census needs them.",
                hint="Remove 'cached' and 'sync'; keep save_limit >= 0.",
                id="census.E001",
            )
        )
    cache_alias = conf.get("cache", "default")
    backend = getattr(django_settings, "CACHES", {}).get(cache_alias, {}).get("BACKEND", "")
    if backend in _LOCAL_CACHES or not backend:
        found.append(
            Warning(
                f"The cache {cache_alias!r} is process-local ({backend or 'missing'}): qinfo and "
                "qmonitor will say no cluster is running, and workers cannot share the "
                "scheduler tick.",
                hint="Use a database cache (createcachetable) or Redis.",
                id="census.W003",
            )
        )
    return found


@register()
def check_census_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    found: list[Error] = []
    if settings.max_attempts < 1:
        found.append(Error("CENSUS_MAX_ATTEMPTS must be at least 1.", id="census.E002"))
    delays = settings.retry_delays
    if not delays or min(delays) < 0:
        found.append(
            Error("CENSUS_RETRY_DELAYS needs at least one delay >= 0 s.", id="census.E003")
        )
    for setting, path in (
        ("CENSUS_SCRAPER", settings.scraper_path),
        ("CENSUS_IS_LEADER", getattr(django_settings, "CENSUS_IS_LEADER", None)),
        ("CENSUS_CAPTCHA_SOLVER", settings.captcha_solver_path),
    ):
        if path is None:
            continue
        try:
            import_string(path)
        except ImportError as exc:
            found.append(Error(f"{setting} = {path!r} cannot be imported: {exc}", id="census.E004"))
    try:
        _ = settings.recheck_after_seconds
    except ValueError as exc:
        found.append(Error(f"CENSUS_RECHECK_AFTER: {exc}", id="census.E005"))
    return found
