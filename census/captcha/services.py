"""The solving services census knows, and the ``CENSUS_CAPTCHA`` setting that picks one.

All four speak one JSON protocol (``createTask``, ``getTaskResult``, ``getBalance``, each a
``POST`` of ``{"clientKey", ...}``); they differ in their address and in the name of a
proxyless reCAPTCHA v2 task. Pure data and validation: no Django, no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """One solving service: where its API lives and what it calls a reCAPTCHA v2 task."""

    name: str
    #: Scheme and host of the JSON API (the methods are ``<api_url>/createTask``, ...).
    api_url: str
    #: ``task.type`` of a reCAPTCHA v2 task solved through the service's own proxies.
    task_type: str
    #: Where the protocol is documented.
    docs: str


#: Every service ``CENSUS_CAPTCHA["service"]`` may name.
SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            name="2captcha",
            api_url="https://api.2captcha.com",
            task_type="RecaptchaV2TaskProxyless",
            docs="https://2captcha.com/api-docs/create-task",
        ),
        ServiceSpec(
            name="capsolver",
            api_url="https://api.capsolver.com",
            task_type="ReCaptchaV2TaskProxyLess",
            docs="https://docs.capsolver.com/en/guide/captcha/ReCaptchaV2/",
        ),
        ServiceSpec(
            name="anti-captcha",
            api_url="https://api.anti-captcha.com",
            task_type="RecaptchaV2TaskProxyless",
            docs="https://anti-captcha.com/apidoc/task-types/RecaptchaV2TaskProxyless",
        ),
        ServiceSpec(
            name="capmonster",
            api_url="https://api.capmonster.cloud",
            # CapMonster's RecaptchaV2Task runs on its own proxies unless proxy fields are given.
            task_type="RecaptchaV2Task",
            docs="https://docs.capmonster.cloud/docs/captchas/no-captcha-task",
        ),
    )
}

#: The keys ``CENSUS_CAPTCHA`` may have.
SETTING_KEYS = ("service", "api_key", "api_url")


@dataclass(frozen=True, kw_only=True)
class CaptchaConfig:
    """``CENSUS_CAPTCHA``, checked: a known service, a key, and the base URL to call."""

    service: str
    #: The account's key: kept out of ``repr`` (and so out of logs and tracebacks).
    api_key: str = field(repr=False)
    #: The base URL: the setting's ``api_url``, else the service's own.
    api_url: str

    @property
    def spec(self) -> ServiceSpec:
        return SERVICES[self.service]

    @classmethod
    def from_setting(cls, value: Any) -> CaptchaConfig:
        """The config a ``CENSUS_CAPTCHA`` dict describes; ``ValueError`` names what is wrong."""
        found = setting_problems(value)
        if found:
            raise ValueError("; ".join(message for _, message in found))
        service = str(value["service"]).strip().lower()
        url = value.get("api_url") or SERVICES[service].api_url
        return cls(service=service, api_key=str(value["api_key"]).strip(), api_url=str(url))


def setting_problems(value: Any) -> list[tuple[str, str]]:
    """What is wrong with a ``CENSUS_CAPTCHA`` value, as (key, message) pairs; [] if nothing.

    The key is "setting" (not a dict, or an unknown key), "service", "api_key" or "api_url".
    """
    if not isinstance(value, dict):
        return [("setting", f"CENSUS_CAPTCHA must be a dict with {', '.join(SETTING_KEYS)}")]
    found: list[tuple[str, str]] = []
    unknown = sorted(str(key) for key in value if key not in SETTING_KEYS)
    if unknown:
        found.append(
            ("setting", f"CENSUS_CAPTCHA has unknown keys {unknown}; known: {list(SETTING_KEYS)}")
        )
    service = value.get("service")
    if not isinstance(service, str) or service.strip().lower() not in SERVICES:
        found.append(
            (
                "service",
                f"CENSUS_CAPTCHA['service'] = {service!r} is not one of {', '.join(SERVICES)}",
            )
        )
    key = value.get("api_key")
    if not isinstance(key, str) or not key.strip():
        found.append(("api_key", "CENSUS_CAPTCHA['api_key'] is missing or empty"))
    url = value.get("api_url")
    if url is not None and not _is_base_url(url):
        found.append(
            (
                "api_url",
                f"CENSUS_CAPTCHA['api_url'] = {url!r} is not a base URL with an http(s) scheme "
                "and a host (e.g. https://api.2captcha.com or http://127.0.0.1:8766)",
            )
        )
    return found


def _is_base_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- a malformed port raises here
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query


def is_cleartext_remote(url: str) -> bool:
    """True for a plain-http URL to a host other than loopback: the key would travel in clear."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    return parts.scheme == "http" and not loopback
