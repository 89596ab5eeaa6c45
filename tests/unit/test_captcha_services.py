"""census.captcha.services: the known services and the CENSUS_CAPTCHA setting, checked."""

from __future__ import annotations

from typing import Any

import pytest

from census.captcha.services import (
    SERVICES,
    CaptchaConfig,
    is_cleartext_remote,
    setting_problems,
)

pytestmark = pytest.mark.any_database

GOOD = {"service": "2captcha", "api_key": "k3y", "api_url": None}


def test_the_four_services_and_their_own_addresses() -> None:
    """Each service has its documented API host (https) and its name for a reCAPTCHA v2 task."""
    assert {name: (s.api_url, s.task_type) for name, s in SERVICES.items()} == {
        "2captcha": ("https://api.2captcha.com", "RecaptchaV2TaskProxyless"),
        "capsolver": ("https://api.capsolver.com", "ReCaptchaV2TaskProxyLess"),
        "anti-captcha": ("https://api.anti-captcha.com", "RecaptchaV2TaskProxyless"),
        "capmonster": ("https://api.capmonster.cloud", "RecaptchaV2Task"),
    }


def test_a_good_setting_uses_the_services_own_url_unless_told() -> None:
    """api_url None means the service's own; a given base URL replaces it."""
    assert setting_problems(GOOD) == []
    config = CaptchaConfig.from_setting(GOOD)
    assert (config.service, config.api_key, config.api_url) == (
        "2captcha",
        "k3y",
        "https://api.2captcha.com",
    )
    local = CaptchaConfig.from_setting(
        {**GOOD, "service": "CapSolver", "api_url": "http://[::1]:9"}
    )
    assert (local.service, local.api_url) == ("capsolver", "http://[::1]:9")


def test_the_key_never_shows_in_the_configs_repr() -> None:
    """repr (logs, tracebacks, the admin's debug pages) leaves the API key out."""
    assert "k3y" not in repr(CaptchaConfig.from_setting(GOOD))


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("2captcha", ["setting"]),
        ({**GOOD, "timeout": 5}, ["setting"]),
        ({**GOOD, "service": "deathbycaptcha"}, ["service"]),
        ({**GOOD, "service": None}, ["service"]),
        ({"service": "anti-captcha"}, ["api_key"]),
        ({**GOOD, "api_key": "   "}, ["api_key"]),
        ({**GOOD, "api_key": 12345}, ["api_key"]),
        ({**GOOD, "api_url": "api.2captcha.com"}, ["api_url"]),
        ({**GOOD, "api_url": "ftp://api.2captcha.com"}, ["api_url"]),
        ({**GOOD, "api_url": "https://"}, ["api_url"]),
        ({**GOOD, "api_url": "http://127.0.0.1:notaport"}, ["api_url"]),
        ({**GOOD, "api_url": "https://h/?key=x"}, ["api_url"]),
        ({"service": "x", "api_key": "", "api_url": 5}, ["service", "api_key", "api_url"]),
    ],
)
def test_each_problem_is_named(value: Any, keys: list[str]) -> None:
    """Not a dict, unknown keys, an unknown service, no key, a URL without scheme and host:
    each is reported under its key, and from_setting refuses the value."""
    assert [key for key, _ in setting_problems(value)] == keys
    with pytest.raises(ValueError, match="CENSUS_CAPTCHA"):
        CaptchaConfig.from_setting(value)


@pytest.mark.parametrize(
    ("url", "cleartext"),
    [
        ("http://solver.example.com", True),
        ("http://10.0.0.5:8766", True),
        ("https://solver.example.com", False),
        ("http://127.0.0.1:8766", False),
        ("http://localhost:8766", False),
        ("http://[::1]:8766", False),
    ],
)
def test_cleartext_means_plain_http_off_this_host(url: str, cleartext: bool) -> None:
    """Plain http to another host would send the key in clear; loopback and https do not."""
    assert is_cleartext_remote(url) is cleartext
