"""Where the scraper's browser may go, and how much of an answer it reads. Pure: no I/O.

The browser is sent to the configured site (``ScraperConfig.site_url``) only. A request may
leave it when it goes to that URL's own origin (scheme, host and port: ``https`` on 443 for
the real site; the simulator's ``http://127.0.0.1:<port>`` in tests), or, over ``https``, to
the reCAPTCHA widget's hosts (``RECAPTCHA_HOSTS``). Every other request is aborted in the
browser (``census.scraper.playwright``). URLs that never reach a network (``data:``,
``blob:``, ``about:``) stay allowed.

An answer is read only when it is at most ``MAX_RESPONSE_BYTES``: what it declares
(``Content-Length``) and what the browser received are checked before its body is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = [
    "MAX_RESPONSE_BYTES",
    "RECAPTCHA_HOSTS",
    "allowed",
    "declared_size",
    "origin",
    "same_origin",
]

#: Hosts the reCAPTCHA v2 widget loads from (``api.js``, its frames, their scripts and
#: calls): reachable over https only. The live page needs nothing else from another origin.
RECAPTCHA_HOSTS = frozenset({"www.google.com", "www.gstatic.com", "www.recaptcha.net"})
#: Schemes whose URLs never leave the browser.
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})
#: Largest response body (a page, the consulta's answer) the scraper reads: the live
#: answers are a few KB, an F5 or error page some tens of KB.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024

#: WebSocket schemes, checked as the HTTP scheme of the same origin.
_WEB_SOCKET = {"ws": "http", "wss": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Digits of a ``Content-Length`` read as a number; a longer one is simply too large.
_MAX_SIZE_DIGITS = 18

#: (scheme, host, port) of a URL.
Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """``url``'s origin: lower-case scheme (``ws``/``wss`` as ``http``/``https``) and host,
    and the port (the scheme's default when absent); None for a URL with no such origin
    (another scheme, no host, a bad port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    scheme = _WEB_SOCKET.get(parts.scheme.lower(), parts.scheme.lower())
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def same_origin(url: str, site_url: str) -> bool:
    """Whether ``url`` is on the configured site's own origin."""
    own = origin(site_url)
    return own is not None and origin(url) == own


def allowed(url: str, site_url: str) -> bool:
    """Whether the browser may send a request to ``url`` while it looks up on ``site_url``:
    the site's own origin, the reCAPTCHA hosts over https (port 443), or a URL that never
    leaves the browser."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in LOCAL_SCHEMES:
        return True
    if same_origin(url, site_url):
        return True
    target = origin(url)
    return (
        target is not None
        and target[0] == "https"
        and target[2] == 443
        and (target[1] in RECAPTCHA_HOSTS)
    )


def declared_size(headers: Mapping[str, str]) -> int | None:
    """The body size a response declares (``Content-Length``, any key case), or None when it
    declares none or nothing readable."""
    for key, value in headers.items():
        if key.lower() == "content-length":
            # A repeated header comes joined (by a comma, or a newline in Playwright).
            text = value.replace("\n", ",").split(",", 1)[0].strip()
            if not (text.isascii() and text.isdigit()):
                return None
            return int(text) if len(text) <= _MAX_SIZE_DIGITS else 10**_MAX_SIZE_DIGITS
    return None
