"""census.scraper.perimeter: where the browser may send requests, and declared sizes."""

from __future__ import annotations

import pytest

from census.scraper.base import SITE_URL
from census.scraper.perimeter import allowed, declared_size, origin, same_origin

SIMULATOR = "http://127.0.0.1:8799/consultar/"


@pytest.mark.parametrize(
    ("url", "site_url", "expected"),
    [
        # The site's own origin, whatever the path or query.
        ("https://consultacenso.registraduria.gov.co/back/api/consulta", SITE_URL, True),
        ("https://CONSULTACENSO.registraduria.gov.co:443/static/x.js?v=1", SITE_URL, True),
        ("https://consultacenso.registraduria.gov.co./consultar/", SITE_URL, True),
        # The same host over http, on another port, or a look-alike host: another origin.
        ("http://consultacenso.registraduria.gov.co/consultar/", SITE_URL, False),
        ("https://consultacenso.registraduria.gov.co:8443/consultar/", SITE_URL, False),
        ("https://registraduria.gov.co/consultar/", SITE_URL, False),
        ("https://consultacenso.registraduria.gov.co.evil.example/", SITE_URL, False),
        ("https://evil.example/?h=consultacenso.registraduria.gov.co", SITE_URL, False),
        # The captcha widget's hosts, over https on 443 only.
        ("https://www.google.com/recaptcha/api.js", SITE_URL, True),
        ("https://www.gstatic.com/recaptcha/releases/abc/recaptcha__es.js", SITE_URL, True),
        ("https://www.recaptcha.net/recaptcha/api2/anchor?k=x", SITE_URL, True),
        ("http://www.google.com/recaptcha/api.js", SITE_URL, False),
        ("https://www.google.com:444/recaptcha/api.js", SITE_URL, False),
        ("https://google.com/recaptcha/api.js", SITE_URL, False),
        # Anything else the page might load.
        ("https://www.googletagmanager.com/gtag/js?id=G-1", SITE_URL, False),
        ("https://fonts.googleapis.com/css?family=Roboto", SITE_URL, False),
        ("https://fonts.gstatic.com/s/roboto/v1/a.woff2", SITE_URL, False),
        # WebSockets: as the HTTP origin they would share.
        ("wss://consultacenso.registraduria.gov.co/socket", SITE_URL, True),
        ("ws://consultacenso.registraduria.gov.co/socket", SITE_URL, False),
        ("wss://evil.example/socket", SITE_URL, False),
        # URLs that never leave the browser.
        ("data:image/png;base64,iVBORw0KGgo=", SITE_URL, True),
        ("blob:https://consultacenso.registraduria.gov.co/1234-abcd", SITE_URL, True),
        ("about:blank", SITE_URL, True),
        # Nothing readable is no origin.
        ("https://consultacenso.registraduria.gov.co:99999/", SITE_URL, False),
        ("ftp://consultacenso.registraduria.gov.co/", SITE_URL, False),
        ("file:///etc/passwd", SITE_URL, False),
        ("", SITE_URL, False),
        # In tests: the simulator's own origin, http and its port, and nothing else.
        ("http://127.0.0.1:8799/recaptcha/api.js", SIMULATOR, True),
        ("http://127.0.0.1:8800/otro/tracker.js", SIMULATOR, False),
        ("http://localhost:8799/otro/tracker.js", SIMULATOR, False),
        ("https://127.0.0.1:8799/consultar/", SIMULATOR, False),
    ],
)
def test_allowed_keeps_the_browser_on_the_site(url: str, site_url: str, expected: bool) -> None:
    """Only the configured origin, the reCAPTCHA hosts over https and local URLs pass."""
    assert allowed(url, site_url) is expected


def test_a_site_url_with_no_origin_allows_only_the_captcha_and_local_urls() -> None:
    """A site URL that names no origin is the origin of nothing: its own host is refused."""
    assert origin("not a url") is None
    assert not same_origin("https://not a url/", "not a url")
    assert not allowed("https://consultacenso.registraduria.gov.co/", "consultacenso")
    assert allowed("https://www.gstatic.com/recaptcha/x.js", "consultacenso")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"content-length": "2048"}, 2048),
        ({"Content-Length": " 17 "}, 17),
        ({"content-length": "10\n10"}, 10),  # repeated, as Playwright joins it
        ({"content-length": "9" * 40}, 10**18),  # absurd, and still a number
        ({"content-length": "-1"}, None),
        ({"content-length": "1e9"}, None),
        ({"content-length": "١٢"}, None),  # digits, but not ASCII ones
        ({"content-type": "application/json"}, None),
        ({}, None),
    ],
)
def test_declared_size_reads_content_length_or_nothing(
    headers: dict[str, str], expected: int | None
) -> None:
    """The declared body size is a plain non-negative ASCII number, else unknown (None)."""
    assert declared_size(headers) == expected
