"""census.checks: Q_CLUSTER values that double-run, retry forever or hide the cluster."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from django.utils import translation

from census.checks import check_census_settings, check_q_cluster

SAFE = {
    "orm": "default",
    "workers": 2,
    "queue_limit": 2,
    "timeout": 150,
    "retry": 600,
    "ack_failures": True,
}
DB_CACHE = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "c"}}
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def ids(q_cluster: dict[str, Any], caches: dict[str, Any] = DB_CACHE, **extra: Any) -> list[str]:
    with override_settings(Q_CLUSTER=q_cluster, CACHES=caches, CENSUS_SCRAPE_TIMEOUT=90, **extra):
        return [m.id for m in check_q_cluster() + check_census_settings()]


def test_safe_configuration_passes() -> None:
    """retry > timeout > scrape timeout, ack_failures and a shared cache: no message."""
    assert ids(SAFE) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"timeout": 60, "retry": 100}, ["census.W001"]),  # below the 120 s task timeout
        ({"timeout": 200, "retry": 190}, ["census.W005", "census.W002"]),
        # (queue_limit 4 + 2 workers) x 120 s: a prefetched task may wait 720 s.
        ({"queue_limit": 4, "retry": 700}, ["census.W005"]),
        ({"queue_limit": None, "workers": 3, "retry": 700}, ["census.W005"]),
        ({"ack_failures": False}, ["census.W004"]),
        ({"save_limit": -1}, ["census.E001"]),
        ({"cached": True}, ["census.E001"]),
    ],
)
def test_unsafe_q_cluster_is_reported(change: dict[str, Any], expected: list[str]) -> None:
    """Each hazard has its own message id."""
    assert ids({**SAFE, **change}) == expected


def test_local_memory_cache_is_reported() -> None:
    """A process-local cache blinds qinfo/qmonitor."""
    assert ids(SAFE, caches=LOCMEM) == ["census.W003"]


def test_bad_census_settings_are_errors() -> None:
    """Zero attempts, no delays and an unimportable scraper are errors."""
    found = ids(SAFE, CENSUS_MAX_ATTEMPTS=0, CENSUS_RETRY_DELAYS=[], CENSUS_SCRAPER="no.such.Cls")
    assert found == ["census.E002", "census.E003", "census.E004"]


def test_a_host_without_playwright_is_warned_not_stopped(monkeypatch: Any) -> None:
    """The browser extra missing (a web-only host): a warning saying where it is needed,
    not an error that would stop migrate or runserver. Another missing module stays E004."""
    import builtins
    import sys

    real_import = builtins.__import__

    def no_playwright(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "playwright" or name.startswith("playwright."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="playwright")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.split(".")[0] == "playwright"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.delitem(sys.modules, "census.scraper.playwright", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_playwright)
    scraper = "census.scraper.playwright.PlaywrightScraper"
    assert ids(SAFE, CENSUS_SCRAPER=scraper) == ["census.W006"]


def test_follow_ups_that_could_never_run_are_errors() -> None:
    """A key that is not a final status and a path that does not import are reported at
    startup, not when the first lookup finishes."""
    good = {"found": ["tests.follow_up_tasks.record"], "any": ["tests.follow_up_tasks.second"]}
    assert ids(SAFE, CENSUS_FOLLOW_UPS=good) == []
    bad = {"finished": ["tests.follow_up_tasks.record"], "error": ["portal.nope.notify"]}
    assert ids(SAFE, CENSUS_FOLLOW_UPS=bad) == ["census.E006", "census.E007"]


@pytest.mark.parametrize(
    "setting", ["CENSUS_RECHECK_AFTER", "CENSUS_TASK_RETENTION", "CENSUS_SNAPSHOT_RETENTION"]
)
def test_a_duration_that_is_not_one_is_an_error(setting: str) -> None:
    """A retention or re-check age that is no duration fails at start-up (census.E005), not
    in the hourly upkeep."""
    with override_settings(**{setting: "two weeks"}):
        errors = [m for m in check_census_settings() if m.id == "census.E005"]
    assert [setting in e.msg for e in errors] == [True]


CAPTCHA = {"service": "2captcha", "api_key": "k3y-value", "api_url": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        (CAPTCHA, []),
        ({**CAPTCHA, "api_url": "http://127.0.0.1:8766"}, []),
        ("2captcha", ["census.E008"]),
        ({**CAPTCHA, "retries": 3}, ["census.E008"]),
        ({**CAPTCHA, "service": "deathbycaptcha"}, ["census.E009"]),
        ({**CAPTCHA, "api_key": ""}, ["census.E010"]),
        ({"service": "capmonster"}, ["census.E010"]),
        ({**CAPTCHA, "api_url": "api.2captcha.com"}, ["census.E011"]),
        ({**CAPTCHA, "api_url": "http://solver.example.com"}, ["census.W007"]),
    ],
)
def test_census_captcha_is_checked(value: Any, expected: list[str]) -> None:
    """An unknown service, a missing key or a base URL without scheme and host is an error at
    startup; plain http to another host is a warning; no message shows the key."""
    with override_settings(CENSUS_CAPTCHA=value):
        found = [m for m in check_census_settings() if m.id.startswith("census.")]
    assert [m.id for m in found] == expected
    assert all("k3y-value" not in f"{m.msg} {m.hint}" for m in found)


def test_a_solver_callable_and_a_service_together_are_warned() -> None:
    """Both CENSUS_CAPTCHA_SOLVER and CENSUS_CAPTCHA: the callable is used, census.W008."""
    solver = "census.testing.simulator.solve_captcha"
    with override_settings(CENSUS_CAPTCHA=CAPTCHA, CENSUS_CAPTCHA_SOLVER=solver):
        assert [m.id for m in check_census_settings()] == ["census.W008"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"CENSUS_CAPTCHA_DAILY_LIMIT": 500, "CENSUS_CAPTCHA_PROBE_SECONDS": 30}, []),
        ({"CENSUS_CAPTCHA_DAILY_LIMIT": None, "CENSUS_CAPTCHA_POOL": False}, []),
        ({"CENSUS_CAPTCHA_DAILY_LIMIT": -1}, ["census.E012"]),
        ({"CENSUS_CAPTCHA_DAILY_LIMIT": "500"}, ["census.E012"]),
        ({"CENSUS_CAPTCHA_DAILY_LIMIT": 2.5}, ["census.E012"]),
        ({"CENSUS_CAPTCHA_PROBE_SECONDS": 0}, ["census.E012"]),
        ({"CENSUS_CAPTCHA_SOLVE_TIMEOUT": None}, ["census.E012"]),
        ({"CENSUS_CAPTCHA_POOL": "yes"}, ["census.E012"]),
    ],
)
def test_the_captcha_pools_settings_are_checked(
    overrides: dict[str, Any], expected: list[str]
) -> None:
    """A daily limit, probe period, solve timeout or pool switch of the wrong kind is an
    error at startup (the pool thread would otherwise fail in every worker, silently)."""
    with override_settings(**overrides):
        assert [m.id for m in check_census_settings()] == expected


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("CENSUS_LOOKUP_FOR", "portal.nope.lookup_for"),
        ("CENSUS_IS_VERIFIED", "portal.nope.is_verified"),
    ],
)
def test_an_unimportable_registration_hook_is_an_error(setting: str, path: str) -> None:
    """CENSUS_LOOKUP_FOR or CENSUS_IS_VERIFIED that cannot be imported is census.E004 at
    startup, naming the setting and the path, not an exception in every registration."""
    with override_settings(**{setting: path}):
        found = check_census_settings()
    assert [m.id for m in found] == ["census.E004"]
    assert f"{setting} = {path!r}" in found[0].msg


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("cedula", "has no field 'cedula'"),
        ("groups", "'groups' is a relation"),  # many-to-many
        ("referred_by", "'referred_by' is a relation"),  # a foreign key
        ("cedula_info", "'cedula_info' is a relation"),  # census's own reverse one-to-one
    ],
)
def test_a_cedula_field_that_is_no_field_of_the_user_model_is_an_error(
    field: str, problem: str
) -> None:
    """CENSUS_CEDULA_FIELD naming no concrete value field of the user model is census.E013,
    naming the setting, with a hint that lists the fields it could name."""
    with override_settings(CENSUS_CEDULA_FIELD=field), translation.override("en"):
        found = check_census_settings()
    assert [m.id for m in found] == ["census.E013"]
    assert f"CENSUS_CEDULA_FIELD = {field!r}" in found[0].msg and problem in found[0].msg
    assert "username, first_name, last_name, email, role" in found[0].hint


@pytest.mark.parametrize("field", ["username", "email", "id"])
def test_a_cedula_field_of_the_user_model_passes(field: str) -> None:
    """Any concrete field of the user model holding a value passes census.E013."""
    with override_settings(CENSUS_CEDULA_FIELD=field):
        assert check_census_settings() == []


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"CENSUS_CAPACITY_SHARES": {"registration": 0.5}}, "not ['registration']"),
        ({"CENSUS_CAPACITY_SHARES": {"refresh": 0.2, "leaders": 0.1}}, "not ['leaders']"),
        ({"CENSUS_CAPACITY_SHARES": {"refresh": 1.5}}, "each share is a number from 0 to 1"),
        ({"CENSUS_CAPACITY_SHARES": {"bulk": -0.1}}, "each share is a number from 0 to 1"),
        ({"CENSUS_CAPACITY_SHARES": {"bulk": "0.2"}}, "each share is a number from 0 to 1"),
        ({"CENSUS_CAPACITY_SHARES": {"bulk": True}}, "each share is a number from 0 to 1"),
        ({"CENSUS_CAPACITY_SHARES": {"refresh": 0.5, "bulk": 0.5}}, "add up to 1 or more"),
        ({"CENSUS_CAPACITY_SHARES": {"refresh": 1}}, "add up to 1 or more"),
        ({"CENSUS_CAPACITY_SHARES": {"refresh": 0.9}}, "add up to 1 or more"),  # bulk's 0.2
        ({"CENSUS_CAPACITY_SHARES": [0.2, 0.2]}, "it must be a dict"),
        ({"CENSUS_REFRESH_PER_HOUR": -1}, "CENSUS_REFRESH_PER_HOUR = -1: it must be a whole"),
        ({"CENSUS_REFRESH_PER_HOUR": 2.5}, "CENSUS_REFRESH_PER_HOUR = 2.5: it must be a whole"),
        ({"CENSUS_REFRESH_PER_HOUR": "30"}, "CENSUS_REFRESH_PER_HOUR = '30': it must be"),
        ({"CENSUS_REFRESH_PER_HOUR": True}, "CENSUS_REFRESH_PER_HOUR = True: it must be"),
    ],
)
def test_capacity_settings_out_of_range_are_an_error(
    overrides: dict[str, Any], problem: str
) -> None:
    """Shares for a class that takes none, out of 0..1 or not numbers, adding up to 1 or more
    (registrations would get nothing), or not a dict, and an hourly refresh cap that is no
    whole number >= 0, are census.E014 at startup, naming the setting and the problem."""
    with override_settings(**overrides), translation.override("en"):
        found = check_census_settings()
    assert [m.id for m in found] == ["census.E014"]
    assert problem in found[0].msg and found[0].hint == "See docs/capacity.md."
    setting = next(iter(overrides))
    assert found[0].msg.startswith(f"{setting} = {overrides[setting]!r}: ")


@pytest.mark.parametrize(
    "overrides",
    [
        {"CENSUS_CAPACITY_SHARES": {"refresh": 0.2, "bulk": 0.2}},  # the defaults, written out
        {"CENSUS_CAPACITY_SHARES": {"refresh": 0.6, "bulk": 0.35}},
        {"CENSUS_CAPACITY_SHARES": {"refresh": 0.7}},  # and bulk's default 0.2
        {"CENSUS_CAPACITY_SHARES": {"refresh": 0, "bulk": 0.5}},  # refreshes wait behind them
        {"CENSUS_CAPACITY_SHARES": {}},
        {"CENSUS_REFRESH_PER_HOUR": None},  # no cap
        {"CENSUS_REFRESH_PER_HOUR": 0},  # no refresh at all
        {"CENSUS_REFRESH_PER_HOUR": 30},
    ],
)
def test_capacity_settings_in_range_pass(overrides: dict[str, Any]) -> None:
    """The default shares and cap pass census.E014, as do shares from 0 to 1 that leave
    registrations something, and an hourly cap that is None or a whole number >= 0."""
    with override_settings(**overrides):
        assert check_census_settings() == []
