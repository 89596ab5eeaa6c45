"""What a lookup's page flow shows its observers: stage reports and page snapshots.

``StageReport`` is one stage of the flow as it ended (``census_check_site`` prints them live);
``take_snapshot`` keeps the page as it is (scrubbed HTML and answer body, a screenshot with
every input emptied and masked). Both are scrubbed of the cédula and never raise: observing
a lookup must not cost it. No Playwright import: the page is whatever object the flow
drives (``census.scraper.playwright``), and ``census_check_site`` reads reports without a
browser installed. The stages were called "steps" while 0.2.0 was developed ("step" is the
lookup's stored counter): ``StepReport``, ``OnStep`` and ``STEPS`` still resolve, with a
``DeprecationWarning``, until 0.3.0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from census.cedula import GAP_PIECES, MIN_DIGITS, SEPARATORS, mask, scrub
from census.compat import renamed
from census.scraper.base import SNAPSHOT_HTML_CHARS, SNAPSHOT_PNG_BYTES, LookupResult, Snapshot
from census.scraper.parser import MAX_PAGE_CHARS, scrub_page

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = [
    "CAPTURES",
    "STAGES",
    "Capture",
    "Fact",
    "OnStage",
    "StageReport",
    "gate_refused",
    "page_html",
    "refusal_facts",
    "report",
    "take_snapshot",
    "url_path",
]

#: Names of the stages a ``StageReport`` can carry, in flow order ("solver" only when one is
#: configured and was needed).
STAGES = (
    "browser",
    "load",
    "elections",
    "form",
    "fill",
    "captcha",
    "token",
    "solver",
    "gate",
    "submit",
    "answer",
)
#: A fact's value: literals only, never the cédula.
Fact = str | int | float | None
#: When a lookup keeps its page: only for an answer in no known shape, or always.
Capture = Literal["unexpected", "always"]
CAPTURES: tuple[Capture, ...] = ("unexpected", "always")
#: Characters kept of a text fact in a ``StageReport``.
FACT_CHARS = 200

#: Inputs hidden in a snapshot's screenshot (their values are also emptied before it).
MASKED_INPUTS = "#documento, #numeroDocumento, input"
#: Seconds each part of a snapshot may take (at most; less when the budget is short) and at
#: least (past the deadline: the browser's close grace covers it).
CAPTURE_WAIT = 5.0
CAPTURE_FLOOR = 1.0

# Before a snapshot's screenshot: every input emptied, and every echo of the number in the
# page's text masked (``pattern``: census.cedula.scrub's echoes, as a JavaScript regex).
# Returns true when the page's rendered text still shows an echo: then no screenshot.
_BLANK_FOR_SHOT = """([pattern, masked]) => {
  for (const input of document.querySelectorAll('input, textarea')) {
    try { input.value = ''; } catch (e) {}
  }
  if (!document.body || !pattern) return;
  const echo = new RegExp(pattern, 'g');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (echo.test(node.nodeValue)) node.nodeValue = node.nodeValue.replace(echo, masked);
    echo.lastIndex = 0;
  }
  // An echo split across elements (<b>1.234</b>.567.890) is in no one text node: say so.
  return echo.test(document.body.innerText);
}"""


@dataclass(frozen=True)
class StageReport:
    """One stage of a lookup's page flow, as it ended (``ok``) or failed.

    ``seconds``: the time spent in this stage (the submit's excludes the gate's wait).
    ``facts``: what the stage saw (HTTP status, URL path, election labels, the gate's wait or
    why it refused, the answer's shape and the parser's verdict...); scrubbed of the cédula.
    """

    name: str
    ok: bool
    seconds: float
    facts: dict[str, Fact] = field(default_factory=dict)


#: Called with each ``StageReport``, on the Playwright thread (the gate's refusal before any
#: browser starts: on the caller's). What it raises is swallowed.
OnStage = Callable[[StageReport], None]

#: The names of when the flow's stages were called steps -> their names now (until 0.3.0).
RENAMED = {"STEPS": "STAGES", "OnStep": "OnStage", "StepReport": "StageReport"}


def resolve_renamed(module: str, name: str) -> Any:
    """``module.name`` asked for by its old name (``RENAMED``): the object, with a
    ``DeprecationWarning`` blamed on the line that asked; any other name is an
    ``AttributeError``. For a module's ``__getattr__``: this one's, and that of
    ``census.scraper.playwright``, which re-exports the names."""
    if name not in RENAMED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    renamed(f"{module}.{name}", f"{module}.{RENAMED[name]}", stacklevel=4)
    return globals()[RENAMED[name]]


def __getattr__(name: str) -> Any:
    return resolve_renamed(__name__, name)


def report(
    on_stage: OnStage | None,
    name: str,
    ok: bool,
    seconds: float,
    facts: dict[str, Fact],
    cedula: str,
) -> None:
    """Hand one ``StageReport`` to ``on_stage``: texts scrubbed and bounded; never raises."""
    if on_stage is None:
        return
    clean: dict[str, Fact] = {}
    for key, value in facts.items():
        if isinstance(value, str):
            value = scrub(value, cedula)[:FACT_CHARS]
        elif value is not None and not isinstance(value, int | float):
            value = scrub(str(value), cedula)[:FACT_CHARS]
        clean[key] = value
    stage = StageReport(name=name, ok=ok, seconds=round(seconds, 3), facts=clean)
    with contextlib.suppress(Exception):  # an observer must not cost the lookup
        on_stage(stage)


def gate_refused(
    on_stage: OnStage | None, refused: LookupResult, seconds: float, cedula: str
) -> None:
    """The gate's refusal before any browser started, as a failed ``gate`` stage."""
    facts = {**refusal_facts(refused), "where": "before the browser"}
    report(on_stage, "gate", False, seconds, facts, cedula)


def refusal_facts(refused: LookupResult) -> dict[str, Fact]:
    """Why the gate let nothing out (``breaker_open``, ``paused``, ...) and when it opens."""
    reason = refused.detail.split(":", 1)[0]
    return {"reason": reason, "opens_in_s": refused.retry_after}


def take_snapshot(page: Page, cedula: str, body: str, remaining: float) -> Snapshot:
    """The page as it is now: scrubbed HTML and answer ``body``, a screenshot with every
    input emptied and masked and every echo of the number in its text masked. Each part
    takes at most ``CAPTURE_WAIT`` s (less when ``remaining``, the lookup's budget, is
    shorter; at least ``CAPTURE_FLOOR``). Never raises: what could not be got stays empty."""
    path = html = ""
    png: bytes | None = None
    with contextlib.suppress(Exception):
        path = url_path(page.url)
    with contextlib.suppress(Exception):
        html = scrub_page(page_html(page), cedula)
    kept_body = _bounded(body, cedula) if body else ""
    timeout_ms = max(min(CAPTURE_WAIT, remaining), CAPTURE_FLOOR) * 1000.0
    try:
        still_shown = page.evaluate(_BLANK_FOR_SHOT, [_echo_pattern(cedula), mask(cedula)])
        shot = (
            None  # no screenshot rather than one that shows the number
            if still_shown
            else page.screenshot(
                type="png",
                mask=[page.locator(MASKED_INPUTS)],
                timeout=timeout_ms,
                animations="disabled",
            )
        )
    except Exception:  # no screenshot rather than one that may show the number
        shot = None
    if shot is not None and len(shot) <= SNAPSHOT_PNG_BYTES:
        png = shot
    return Snapshot(html=html, body=kept_body, png=png, path=path)


#: The page's HTML as ``page.content()`` writes it, cut in the browser to the characters
#: asked for: a page that grew without bound is never carried over whole.
_PAGE_HTML = """(chars) => {
  let html = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : '';
  if (document.documentElement) html += document.documentElement.outerHTML;
  return html.length > chars ? html.slice(0, chars) : html;
}"""


def page_html(page: Page, chars: int = MAX_PAGE_CHARS + 1) -> str:
    """The page's HTML, at most ``chars`` characters (by default one more than the parser
    reads, so that it knows a page was longer)."""
    return str(page.evaluate(_PAGE_HTML, chars))


def url_path(url: str) -> str:
    """A URL's path, without its query string (which may carry the number)."""
    return urlsplit(url).path


def _bounded(text: str, cedula: str) -> str:
    """Scrubbed first, then cut: a cut never leaves the number whole."""
    return scrub(text, cedula)[:SNAPSHOT_HTML_CHARS]


def _echo_pattern(cedula: str) -> str:
    """``census.cedula.scrub``'s echoes of ``cedula`` in rendered text, as a JavaScript
    regex: its digits with up to ``GAP_PIECES`` separators or line breaks between two,
    leading zeros allowed, not inside a longer number. "" (nothing to mask) when ``cedula``
    has fewer than 3 digits."""
    digits = "".join(char for char in cedula if "0" <= char <= "9").lstrip("0")
    if len(digits) < MIN_DIGITS:
        return ""
    separator = "[" + "".join(f"\\u{ord(char):04x}" for char in SEPARATORS + "\r\n") + "]"
    core = f"{separator}{{0,{GAP_PIECES}}}".join(digits)
    return f"(?<![0-9])(?:0{separator}?)*{core}(?![0-9])"
