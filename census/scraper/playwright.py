"""The real scraper: drives the census page in headless Chromium through Playwright (sync API).

The only module that imports Playwright. Importing it starts nothing: each ``lookup()`` runs on
a thread of its own that starts Playwright's driver, launches Chromium, runs the page flow and
closes all of it before ``lookup()`` returns. So the calling thread (a Django-Q2 worker's main
thread) keeps a working ORM, and no browser or driver outlives its lookup:

- the flow is bounded by ``CENSUS_SCRAPE_TIMEOUT``; if the thread has not finished
  ``CLOSE_GRACE`` seconds later, or the caller is interrupted (Django-Q2's SIGALRM raises in the
  waiting thread), the driver and Chromium are SIGKILLed;
- if the worker process itself dies (SIGTERM, SIGKILL), the driver reads end-of-file on its
  stdin pipe, closes Chromium and exits; if only the driver dies, Chromium exits when its
  DevTools pipe closes. Both measured; see docs/scraper.md.

Finding and killing those processes is ``census.scraper.processes``'s job; this module is the
page flow. The flow keeps the browser on the configured site (``census.scraper.perimeter``
says where it may go): requests elsewhere are aborted, a page that lands elsewhere ends the
lookup before the cédula is typed, and no body over the size limit is read.

Each stage of the flow can be reported as it ends (``on_stage``, a ``StageReport``), and the page
is kept as a ``Snapshot`` (scrubbed HTML, answer body, masked screenshot) when its answer has
no known shape, or after every lookup with ``capture="always"`` (``census_check_site``); both
are ``census.scraper.observe``'s.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Response,
    Route,
    WebSocketRoute,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from census import events
from census.cedula import (
    MAX_DIGITS,
    MIN_DIGITS,
    InvalidCedula,
    is_canonical,
    mask,
    normalize,
    scrub,
)
from census.compat import renamed
from census.events import Event
from census.gate.protocol import Closed, Gate, Slot
from census.outcomes import CAPTCHA_SERVICE_REASON, OWN_SLOWNESS_REASONS, Outcome
from census.scraper.base import (
    LookupResult,
    ScraperConfig,
    Snapshot,
    site_changed,
)
from census.scraper.observe import (
    CAPTURES,
    STAGES,
    Capture,
    Fact,
    OnStage,
    StageReport,
    gate_refused,
    page_html,
    refusal_facts,
    report,
    resolve_renamed,
    take_snapshot,
    url_path,
)
from census.scraper.parser import is_f5_block, parse_consulta, parse_rendered_page
from census.scraper.perimeter import (
    MAX_RESPONSE_BYTES,
    allowed,
    declared_size,
    origin,
    same_origin,
)
from census.scraper.processes import DriverProcesses, retrieve_driver_error
from census.scraper.slots import NoBrowserSlot, browser_slot

__all__ = [
    "CHROMIUM_ARGS",
    "FALLBACK_SIGNATURE",
    "Fact",
    "STAGES",
    "Capture",
    "LookupBudget",
    "OnStage",
    "deferred",
    "site_changed",
    "PlaywrightScraper",
    "ScraperConfig",
    "StageReport",
    "launch_browser",
    "missing_element",
    "new_lookup_context",
    "off_site",
    "oversized",
    "run_flow",
]

#: Chromium used when neither CENSUS_BROWSER_EXECUTABLE nor Playwright's own build is there.
FALLBACK_EXECUTABLE = "/usr/bin/chromium"
#: Without these, Chromium keeps calling Google services (sync, updates, field trials, QUIC),
#: which this kind of host refuses; --disable-dev-shm-usage avoids crashes on a small /dev/shm.
CHROMIUM_ARGS = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
)
#: Seconds the page gets to show its election list, and the checkbox to yield a token.
FORM_WAIT = 20.0
TOKEN_WAIT = 20.0
#: Seconds after the scrape timeout before a stuck browser is killed.
CLOSE_GRACE = 10.0
#: A rate-gate slot later than this many seconds before the deadline is not worth taking.
ANSWER_RESERVE = 1.0
#: Seconds a lookup waits when the gate's database could not be reached (nothing was sent).
GATE_UNAVAILABLE_WAIT = 15.0
#: Stages that wait only on this host (typing, selecting, clicking submit): running out of
#: time there, with nothing sent, is our machine's slowness, not the site's. Stages that
#: wait on the site (page load, election list, captcha widget, answer) are charged as
#: timeouts, so a site that never serves its page still ends the lookup in error.
OWN_STAGES = frozenset({"fill", "submit"})
#: Seconds before a lookup slowed by our own machine tries again.
OWN_SLOWNESS_WAIT = 5.0
#: Milliseconds between keystrokes: typed, not pasted, as a person would.
TYPING_DELAY_MS = 35
CONSULTA_PATH = "/back/api/consulta"
ANCHOR_FRAME = 'iframe[src*="recaptcha"][src*="anchor"], iframe[title="reCAPTCHA"]'
#: The checkbox inside the anchor frame.
ANCHOR = "#recaptcha-anchor"
#: Elements of the form the flow needs once the election list is there: when one is missing
#: the site has changed (``unexpected_page``), which a locator timeout would hide.
FORM_ELEMENTS = ("#documento", "#eleccion", "#submitBtn")
#: The signature of an ``unexpected_page`` whose check gave none.
FALLBACK_SIGNATURE = "page:unknown"
CHALLENGE_TITLE = "recaptcha challenge expires in two minutes"

_ELECTIONS_READY = """() => {
  const select = document.querySelector('#eleccion');
  return !!select && Array.from(select.options).some((o) => o.value !== '');
}"""
_ELECTION_CHOICES = """() => Array.from(document.querySelectorAll('#eleccion option'))
  .filter((o) => o.value !== '').map((o) => [o.value, (o.textContent || '').trim()])"""
# The challenge frame sits in the page from the start, hidden off-screen: only a visible one
# counts.
_TOKEN_OR_CHALLENGE = """(title) => {
  const area = document.getElementById('g-recaptcha-response');
  if (area && area.value) return 'token';
  for (const frame of document.querySelectorAll('iframe')) {
    if ((frame.title || '').toLowerCase() !== title) continue;
    const style = getComputedStyle(frame);
    const box = frame.getBoundingClientRect();
    if (style.visibility === 'visible' && style.display !== 'none'
        && box.width > 0 && box.height > 0 && box.bottom > 0) return 'challenge';
  }
  return false;
}"""
# A solved token goes where the widget puts its own (the textarea, getResponse) and to the
# widget's callback, which pages that enable their submit from it need: the one named by
# data-callback, and any kept in ___grecaptcha_cfg.clients (where api.js keeps a callback
# given to grecaptcha.render), each called once. The challenge overlay, which a solved widget
# would dismiss, is hidden so that it no longer covers the submit button. Returns how many
# callbacks were called.
_INJECT_TOKEN = """([token, title]) => {
  const area = document.getElementById('g-recaptcha-response');
  if (area) area.value = token;
  if (window.grecaptcha) { try { window.grecaptcha.getResponse = () => token; } catch (e) {} }
  for (const frame of document.querySelectorAll('iframe')) {
    if ((frame.title || '').toLowerCase() !== title) continue;
    let box = frame;
    while (box.parentElement && box.parentElement !== document.body) box = box.parentElement;
    box.style.visibility = 'hidden';
  }
  const called = new Set();
  const call = (callback) => {
    const fn = typeof callback === 'function' ? callback
      : (typeof callback === 'string' ? window[callback] : null);
    if (typeof fn !== 'function' || called.has(fn)) return;
    called.add(fn);
    try { fn(token); } catch (e) {}
  };
  for (const el of document.querySelectorAll('.g-recaptcha[data-callback]')) {
    call(el.getAttribute('data-callback'));
  }
  const seen = new Set();
  const walk = (node, depth) => {
    if (!node || typeof node !== 'object' || depth > 5 || seen.has(node)) return;
    if (node instanceof Node || node === window) return;
    seen.add(node);
    for (const [key, value] of Object.entries(node)) {
      if (key === 'callback') call(value);
      else walk(value, depth + 1);
    }
  };
  const cfg = window.___grecaptcha_cfg;
  if (cfg && cfg.clients) for (const client of Object.values(cfg.clients)) walk(client, 0);
  return called.size;
}"""
#: Seconds the page gets to enable its submit once the token was handed over.
SUBMIT_ENABLED_WAIT = 5.0
_SUBMIT_ENABLED = """() => {
  const button = document.querySelector('#submitBtn');
  return !!button && !button.disabled;
}"""
_RESULT_SHOWN = """() => !!document.querySelector('#resultado table')
  || /no se encuentra en el censo/i.test(document.body ? document.body.innerText : '')"""
_MISSING = """(selectors) => selectors.filter((s) => !document.querySelector(s))"""
# Chromium follows a redirect before any route sees it, and a 307 or 308 posts the query's
# body again, to wherever it points: the page's fetch of the consulta is made with
# ``redirect: "manual"``, so that a redirect is not followed; the browser then reports the
# request as aborted, and the page's window notes that it was a redirect. Runs before the
# page's own scripts.
_CONSULTA_REDIRECTED = "() => window.__censusConsultaRedirected === true"
_NO_CONSULTA_REDIRECTS = """(() => {
  const original = window.fetch;
  if (typeof original !== 'function') return;
  window.fetch = function (input, init) {
    try {
      const target = typeof input === 'string' || input instanceof URL ? String(input) : input.url;
      const url = new URL(target, location.href);
      if (url.pathname.replace(/\\/+$/, '').endsWith('%s')) {
        init = Object.assign({}, init || {}, { redirect: 'manual' });
        return original.call(this, input, init).then((response) => {
          if (response.type === 'opaqueredirect') window.__censusConsultaRedirected = true;
          return response;
        });
      }
    } catch (e) {}
    return original.call(this, input, init);
  };
})();"""


def _now() -> datetime:
    return datetime.now(UTC)


class PlaywrightScraper:
    """``Scraper`` on real Chromium, safe from any thread.

    It gets everything from its caller (the gate and a frozen ``ScraperConfig``): this package
    reads no Django settings and touches no database. Site failures come back as outcomes;
    a bug (an unexpected exception in the flow or the parser) is raised, with its traceback.

    ``on_stage``: called with a ``StageReport`` as each stage ends or fails (see ``STAGES``);
    it never breaks a lookup (``on_step``, its old name, still works with a warning).
    ``capture``: "unexpected" (the default) attaches a ``Snapshot`` to ``unexpected_page``
    results only, "always" to every result the page flow produced.
    """

    def __init__(
        self,
        *,
        gate: Gate,
        config: ScraperConfig,
        on_stage: OnStage | None = None,
        capture: Capture = "unexpected",
        on_step: OnStage | None = None,
    ) -> None:
        if capture not in CAPTURES:
            raise ValueError(f"capture must be one of {', '.join(CAPTURES)}; got {capture!r}")
        self.gate = gate
        self.config = config
        self.on_stage = _stage_observer(on_stage, on_step, "PlaywrightScraper")
        self.capture: Capture = capture

    def lookup(self, cedula: str) -> LookupResult:
        """Look one cédula up; every site failure comes back as an outcome.

        ``cedula`` is its canonical digits (``census.cedula.normalize``'s result, which the
        task passes): it goes into the form as given, not normalised again. Anything else is
        refused as ``invalid_cedula`` before any browser starts.
        """
        if not is_canonical(cedula):
            return _not_canonical(cedula)
        config = self.config
        peeked = time.monotonic()
        try:
            closed = self.gate.peek(config.timeout - ANSWER_RESERVE)
        except Exception as error:  # the gate's database is down: nothing sent, wait for it
            refused = gate_unavailable(error)
            gate_refused(self.on_stage, refused, time.monotonic() - peeked, cedula)
            return refused
        if closed is not None:  # no slot within this lookup: do not even start a browser
            refused = deferred(closed)
            gate_refused(self.on_stage, refused, time.monotonic() - peeked, cedula)
            return refused
        started = time.monotonic()
        try:
            # At most CENSUS_BROWSERS_PER_HOST browsers at once on this host; the lookup's
            # budget starts once it has one.
            with browser_slot(config.browsers_per_host, config.browser_wait, config.slots_dir):
                run = _Run(cedula, config, self.gate, on_stage=self.on_stage, capture=self.capture)
                result = run.execute()
        except NoBrowserSlot as busy:
            facts: dict[str, Fact] = {"reason": OWN_SLOWNESS_REASONS[1]}
            report(self.on_stage, "browser", False, time.monotonic() - started, facts, cedula)
            return deferred_for_own_slowness(str(busy), reason=OWN_SLOWNESS_REASONS[1])
        # Off the Playwright thread, after the browser is gone: the gate's record may retry
        # a dropped database for a while without holding a browser or its deadline.
        slot = run.slot
        unexpected = result.outcome is Outcome.UNEXPECTED_PAGE
        if slot is not None or result.outcome is Outcome.BLOCKED or unexpected:
            # A block of the page load itself (no slot taken) opens the breaker too; so does
            # a page in no known shape, sent or not (a changed form is the site's change).
            signature = str(result.meta.get("signature") or "unknown") if unexpected else ""
            opens_in = self.gate.record(
                # A changed form sends nothing and takes no slot: it tests the site as a
                # probe would (the breaker lets no browser start while it is open).
                slot or Slot(_now(), probe=unexpected),
                blocked=result.outcome is Outcome.BLOCKED,
                answered=result.outcome.is_answer,
                retry_after=result.retry_after,
                unexpected=signature,
            )
            if unexpected and opens_in is not None:
                result = site_changed(result, opens_in)
        elapsed = round(time.monotonic() - started, 3)
        return replace(result, meta={**result.meta, "elapsed": elapsed})


def deferred(closed: Closed) -> LookupResult:
    """Nothing was sent: the gate opens at ``closed.until``; the pipeline waits for it.

    ``detail`` starts with the reason (``breaker_open``, ``rate_backlog``, ...).
    """
    wait = max(closed.wait, 0.0)
    return LookupResult(
        outcome=Outcome.DEFERRED,
        detail=f"{closed.reason}: the cluster-wide gate opens in {wait:.0f} s",
        retry_after=wait,
        meta={**_stage_meta("rate_gate"), "sent": False},
    )


def deferred_for_own_slowness(detail: str, reason: str = OWN_SLOWNESS_REASONS[0]) -> LookupResult:
    """Nothing was sent: this host could not drive a browser in time (``browser_slow``) or
    had no browser free (``browsers_busy``); the member is not charged for it."""
    return LookupResult(
        outcome=Outcome.DEFERRED,
        detail=f"{reason}: {detail}",
        retry_after=OWN_SLOWNESS_WAIT,
        meta={"sent": False},
    )


def gate_unavailable(error: BaseException) -> LookupResult:
    """Nothing was sent: the gate's database did not answer; try again shortly."""
    return LookupResult(
        outcome=Outcome.DEFERRED,
        detail=f"gate_unavailable: the gate's database did not answer ({type(error).__name__})",
        retry_after=GATE_UNAVAILABLE_WAIT,
        meta={**_stage_meta("rate_gate"), "sent": False},
    )


def _stage_meta(stage: str) -> dict[str, Any]:
    """Where the flow stopped, for a result's ``meta``: ``stage``, and ``step``, that key's
    old name, kept until 0.3.0."""
    return {"stage": stage, "step": stage}


def launch_browser(playwright: Playwright, config: ScraperConfig, timeout_ms: float) -> Browser:
    """Launch headless Chromium with the flags this project needs."""
    args = list(CHROMIUM_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return playwright.chromium.launch(
        executable_path=_executable(playwright, config),
        headless=config.headless,
        args=args,
        timeout=timeout_ms,
    )


def new_lookup_context(browser: Browser, timeout_ms: float) -> BrowserContext:
    """A fresh context with a normal desktop user agent (the default says HeadlessChrome).

    Service workers are blocked: their requests would not pass the flow's routes, which keep
    the browser on the site (``census.scraper.perimeter``)."""
    context = browser.new_context(
        user_agent=_user_agent(browser.version),
        locale="es-CO",
        timezone_id="America/Bogota",
        viewport={"width": 1280, "height": 800},
        service_workers="block",
    )
    context.set_default_timeout(timeout_ms)
    return context


@dataclass
class LookupBudget:
    """The settings, the gate and the deadline (``time.monotonic()``) of one lookup.

    The deadline stops while the captcha solver runs (at most ``config.solve_timeout``): a
    solve's wait is the solving service's, not the page's."""

    config: ScraperConfig
    gate: Gate
    deadline: float
    #: When the solver was called, while it runs.
    solving_since: float | None = None

    @classmethod
    def start(cls, config: ScraperConfig, gate: Gate) -> LookupBudget:
        return cls(config=config, gate=gate, deadline=time.monotonic() + config.timeout)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def solving(self) -> None:
        """The solver was called: the page's deadline stops until ``solved``."""
        self.solving_since = time.monotonic()

    def solved(self) -> None:
        """The solver returned: the deadline moves on by its time (at most the solve
        timeout)."""
        if self.solving_since is not None:
            spent = time.monotonic() - self.solving_since
            self.deadline += min(max(spent, 0.0), self.config.solve_timeout)
            self.solving_since = None

    def hard_limit(self) -> float:
        """When a browser still running is killed: the deadline, plus a running solve's
        allowance, plus ``CLOSE_GRACE``."""
        allowance = self.config.solve_timeout if self.solving_since is not None else 0.0
        return self.deadline + allowance + CLOSE_GRACE

    def ms(self, cap: float | None = None) -> float:
        """A Playwright timeout: the time left (at most ``cap`` s), never 0 (= no timeout)."""
        seconds = self.remaining() if cap is None else min(cap, self.remaining())
        return max(seconds * 1000.0, 1.0)


class _Run:
    """One lookup: its Playwright thread, its result, and how to abort it."""

    def __init__(
        self,
        cedula: str,
        config: ScraperConfig,
        gate: Gate,
        *,
        on_stage: OnStage | None = None,
        capture: Capture = "unexpected",
    ) -> None:
        self.cedula = cedula
        self.config = config
        self.budget = LookupBudget.start(config, gate)
        self.on_stage = on_stage
        self.capture: Capture = capture
        self._done = threading.Event()
        self._result: LookupResult | None = None
        self._error: BaseException | None = None
        self._processes = DriverProcesses()
        #: The page flow, once it runs: a killed browser's request may already have gone.
        self._flow: _Flow | None = None

    @property
    def slot(self) -> Slot | None:
        """The gate's slot the consulta went out in, if it did."""
        return None if self._flow is None else self._flow.slot

    def execute(self) -> LookupResult:
        # The caller's contextvars (lookup_id, attempt) go with it: every line it logs says
        # which lookup it is about.
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(self._main,), name="census-playwright", daemon=True
        )
        thread.start()
        try:
            finished = self._done.wait(self.config.timeout + CLOSE_GRACE)
            # The budget may have moved on while the solver ran (``LookupBudget.solved``).
            while not finished and (left := self.budget.hard_limit() - time.monotonic()) > 0:
                finished = self._done.wait(left)
        except BaseException:
            # Django-Q2's timeout (SIGALRM) raises here: take the browser down before leaving.
            self._abort("caller_interrupted")
            raise
        if not finished:
            self._abort("browser_stuck")
            sent = self._flow is not None and self._flow.slot is not None
            return LookupResult(
                outcome=Outcome.TIMEOUT,
                detail=f"the browser did not finish within {self.config.timeout:g}s; killed",
                meta={"sent": sent},
            )
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _main(self) -> None:
        try:
            self._result = self._scrape()
        except BaseException as error:  # a bug: handed to the caller with its traceback
            self._error = error
        finally:
            self._done.set()

    def _scrape(self) -> LookupResult:
        manager = sync_playwright()
        playwright = manager.start()
        self._processes.started(manager)
        launching = time.monotonic()
        try:
            try:
                browser = launch_browser(playwright, self.config, self.budget.ms())
            except PlaywrightTimeoutError as error:  # our machine too slow: not the member's
                result = deferred_for_own_slowness(
                    _describe(error, self.cedula, "the browser did not start")
                )
                self._browser_failed(result, launching)
                return result
            except PlaywrightError as error:
                detail = _describe(error, self.cedula, "the browser did not start")
                result = LookupResult(outcome=Outcome.TASK_FAILED, detail=detail)
                self._browser_failed(result, launching)
                return result
            try:
                context = new_lookup_context(browser, self.budget.ms())
                try:
                    page = context.new_page()
                    facts: dict[str, Fact] = {"version": browser.version}
                    seconds = time.monotonic() - launching
                    report(self.on_stage, "browser", True, seconds, facts, self.cedula)
                    self._flow = _Flow(
                        page, self.cedula, self.budget, on_stage=self.on_stage, capture=self.capture
                    )
                    return self._flow.run()
                finally:
                    _quietly(context.close)
            finally:
                _quietly(browser.close)
        finally:
            _quietly(playwright.stop)
            retrieve_driver_error(manager)

    def _browser_failed(self, result: LookupResult, started: float) -> None:
        facts: dict[str, Fact] = {"outcome": result.outcome.value, "detail": result.detail}
        report(self.on_stage, "browser", False, time.monotonic() - started, facts, self.cedula)

    def _abort(self, reason: str) -> None:
        """SIGKILL this lookup's driver and everything under it (Chromium and its helpers)."""
        killed = self._processes.kill()
        events.emit(Event.BROWSER_KILLED, reason=reason, processes=killed)


#: The rate gate's answer to the consulta: the slot it went out in or, when the gate let
#: nothing out before the deadline (or its database was down), the lookup's result.
_GateAnswer = Slot | LookupResult


def _ask_gate(gate: Gate, within: float) -> _GateAnswer:
    """Wait up to ``within`` s for the gate's slot; else why nothing may go out (a deferral)."""
    try:
        admission = gate.wait_turn(within=within)
    except Exception as error:  # the gate's database is down: nothing goes out
        return gate_unavailable(error)
    return deferred(admission) if isinstance(admission, Closed) else admission


class _Flow:
    """The page flow of one lookup, on the Playwright thread."""

    def __init__(
        self,
        page: Page,
        cedula: str,
        budget: LookupBudget,
        *,
        on_stage: OnStage | None = None,
        capture: Capture = "unexpected",
    ) -> None:
        self.page = page
        self.cedula = cedula
        self.budget = budget
        self.on_stage = on_stage
        self.capture: Capture = capture
        #: Where the flow is (``meta["stage"]`` of its result; ``OWN_STAGES``).
        self.stage = "load"
        self.responses: list[Response] = []
        self.failures: list[str] = []
        #: Recorded by the route handler (``_release``) once the consulta reached the gate.
        self.gate_answer: _GateAnswer | None = None
        #: The consulta response's body, once read (for a snapshot).
        self.body: str | None = None
        # The report being built: the open stage (name, start) and its facts so far.
        self._open: tuple[str, float] | None = None
        self._facts: dict[str, Fact] = {}
        # The submit stage ends once the click is done and the request left (or was refused).
        self._clicked = False
        self._submit_done = False
        self._gate_seconds = 0.0
        self._sent_at: float | None = None
        #: When the solved token stops being usable (``time.monotonic()``), if it says.
        self._use_by: float | None = None
        #: The origins of the requests aborted for leaving the site, one entry per request.
        self.aborted: list[str] = []
        #: Requests whose response was fully received (``requestfinished``).
        self._finished: list[Request] = []
        #: The origin the consulta went to when it left the site (sent elsewhere by the page:
        #: aborted; redirected by the site: gone, as no route sees a redirect).
        self._consulta_left: str | None = None

    @property
    def slot(self) -> Slot | None:
        """The gate's slot the consulta went out in (once it did)."""
        return self.gate_answer if isinstance(self.gate_answer, Slot) else None

    @property
    def refusal(self) -> LookupResult | None:
        """The lookup's result when the gate held the consulta back: nothing was sent."""
        return self.gate_answer if isinstance(self.gate_answer, LookupResult) else None

    def run(self) -> LookupResult:
        try:
            result = self._stages()
        except PlaywrightTimeoutError as error:
            result = self._timed_out(error)
        except PlaywrightError as error:
            result = self._browser_error(error)
        if result.outcome is Outcome.UNEXPECTED_PAGE and not result.meta.get("signature"):
            result = replace(result, meta={**result.meta, "signature": FALLBACK_SIGNATURE})
        self._close_open_stage(result)
        meta = {**result.meta, **_stage_meta(self.stage), "sent": self.slot is not None}
        if self.aborted:
            meta["aborted"] = len(self.aborted)
        result = replace(result, meta=meta)
        if self.capture == "always" or result.outcome is Outcome.UNEXPECTED_PAGE:
            result = replace(result, snapshot=self.snapshot())
        return result

    def _stages(self) -> LookupResult:
        page, config = self.page, self.budget.config
        site = config.site_url
        # Off the site, every request is aborted in the browser, for every page of the
        # context (a popup too); the consulta's own route (below) is on the page and
        # matches the site's origin only, so it never lets another origin's request go.
        page.context.route(lambda url: not allowed(url, site), self._abort_off_site)
        page.context.route_web_socket(lambda url: not allowed(url, site), self._close_socket)
        page.context.add_init_script(_NO_CONSULTA_REDIRECTS % CONSULTA_PATH)
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_request_finished)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)

        self.stage = "load"
        self._begin("load")
        loaded = page.goto(site, wait_until="domcontentloaded", timeout=self.budget.ms())
        self._facts["path"] = url_path(page.url)
        # A redirect is followed by the browser before any route sees it: the page may
        # have landed elsewhere. Nothing is read from it, nothing typed into it.
        if (left := self._left_site()) is not None:
            return left
        if loaded is not None:
            self._facts["http_status"] = loaded.status
            if (size := self._too_large(loaded)) is not None:
                self._facts["bytes"] = size
                return oversized("page", size)
            html = page_html(page)
            if loaded.status >= 400 or is_f5_block(html):
                content_type = loaded.headers.get("content-type", "")
                self._facts["content_type"] = content_type
                return parse_consulta(
                    loaded.status,
                    content_type,
                    html,
                    loaded.headers,
                    self.cedula,
                    max_retry_after=config.max_retry_after,
                )
        self._end(True)

        self.stage = "form"
        self._begin("elections")
        try:
            page.wait_for_function(_ELECTIONS_READY, timeout=self.budget.ms(FORM_WAIT))
        except PlaywrightTimeoutError:
            if self.budget.remaining() <= 0:
                raise
            self._facts["count"] = 0
            found = parse_rendered_page(page_html(page), self.cedula)
            return found.with_detail(f"no election list; {found.detail}")
        choices = page.evaluate(_ELECTION_CHOICES)
        labels = "; ".join(str(label) for _, label in choices)
        self._end(True, {"count": len(choices), "labels": labels})

        # The form's shape: a renamed or missing element is the site's change, not a timeout.
        self._begin("form")
        missing = [str(name) for name in page.evaluate(_MISSING, list(FORM_ELEMENTS))]
        if missing:
            self._facts["missing"] = ", ".join(name.lstrip("#") for name in missing)
            return missing_element(missing)
        self._end(True, {"elements": len(FORM_ELEMENTS)})

        # The page may have moved since it loaded: the cédula is typed on the site or nowhere.
        if (left := self._left_site()) is not None:
            return left
        # Typing (this host's own time) first: the captcha's frame loads meanwhile. Waiting
        # for the widget first moved a starved host's deadline from the typing (not charged)
        # into the captcha stage (charged as the site's timeout).
        self.stage = "fill"
        self._begin("fill")
        page.locator("#documento").press_sequentially(
            self.cedula, delay=TYPING_DELAY_MS, timeout=self.budget.ms()
        )
        election = _pick_election(choices)
        page.select_option("#eleccion", value=election, timeout=self.budget.ms())
        self._end(True, {"election": election})

        self.stage = "captcha"
        self._begin("captcha")
        anchor = page.frame_locator(ANCHOR_FRAME).first.locator(ANCHOR)
        widget_until = time.monotonic() + FORM_WAIT
        try:
            page.wait_for_selector(
                ANCHOR_FRAME, state="attached", timeout=self.budget.ms(FORM_WAIT)
            )
            anchor.wait_for(
                state="attached",
                timeout=self.budget.ms(max(widget_until - time.monotonic(), 0.001)),
            )
        except PlaywrightTimeoutError:
            if self.budget.remaining() <= 0:
                raise
            self._facts["present"] = "no"
            return missing_element([ANCHOR], seconds=FORM_WAIT)
        self._end(True, {"present": "yes"})

        self.stage = "captcha"
        self._begin("token")
        anchor.click(timeout=self.budget.ms(FORM_WAIT))
        clicked = time.monotonic()
        try:
            state = page.wait_for_function(
                _TOKEN_OR_CHALLENGE,
                arg=CHALLENGE_TITLE,
                timeout=self.budget.ms(TOKEN_WAIT),
                polling=100,
            ).json_value()
        except PlaywrightTimeoutError:
            # A token that never came is the captcha's failure, even at the deadline.
            state = f"no captcha token within {time.monotonic() - clicked:.0f}s"
        if state == "token":
            self._end(True, {"got": "token"})
        else:
            self._end(False, {"got": "challenge" if state == "challenge" else "nothing"})
            if config.solver_path:
                self._begin("solver")
            refused = self._solve(str(state))
            if refused is not None:
                return refused
            self._end(True, {"got": "token"})

        # The gate holds the query itself, once the page has sent it and before it leaves
        # the browser: gating the click instead left the page's own (load-dependent) delay
        # between the slot and the request, and two workers' requests came closer than the
        # limit on a busy machine.
        self.stage = "submit"
        self._begin("submit")
        if (left := self._left_site()) is not None:
            return left
        page.route(
            lambda url: (
                same_origin(url, site) and urlsplit(url).path.rstrip("/").endswith(CONSULTA_PATH)
            ),
            self._release,
        )
        page.locator("#submitBtn").click(timeout=self.budget.ms())
        self._clicked = True
        self._end_submit()
        self.stage = "answer"
        return self._answer()

    def _release(self, route: Route) -> None:
        """Let the consulta request go when the gate allows, or abort it if it does not in
        time; the gate is told the moment it left."""
        if not _is_consulta(route.request):
            route.fallback()  # to the context's routes: the site's own, or aborted
            return
        self.stage = "rate_gate"
        asked = time.monotonic()
        # Blocking here only pauses this page's event loop: nothing else is due meanwhile.
        within = self.budget.remaining() - ANSWER_RESERVE
        if self._use_by is not None:  # a token sent past its life would be refused, and paid
            within = min(within, self._use_by - time.monotonic())
        answer = _ask_gate(self.budget.gate, within)
        self._gate_seconds = time.monotonic() - asked
        self.gate_answer = answer
        if not isinstance(answer, Slot):
            self._report("gate", False, self._gate_seconds, refusal_facts(answer))
            route.abort()
            self._end_submit()
            return
        facts: dict[str, Fact] = {"waited_s": round(self._gate_seconds, 3)}
        if answer.probe:
            facts["probe"] = "yes"
        self._report("gate", True, self._gate_seconds, facts)
        self.stage = "answer"
        try:
            route.continue_()
        finally:  # even if continuing failed: the next request is spaced from now
            self.budget.gate.sent(answer)
            self._sent_at = time.monotonic()
            self._end_submit()

    def _end_submit(self) -> None:
        """Report the submit once the click is done and the gate let the request go (or
        refused it); the answer stage starts when it left."""
        if self._submit_done or not self._clicked or self.gate_answer is None:
            return
        self._submit_done = True
        sent = self.slot is not None
        self._end(sent, {"sent": "yes" if sent else "no"}, minus=self._gate_seconds)
        if sent:
            self._begin("answer", started=self._sent_at)

    def _solve(self, state: str) -> LookupResult | None:
        """Ask the configured solver for a token; a result means the captcha failed.

        ``state`` is "challenge" or why no token came.
        """
        reason = "the captcha showed an image challenge" if state == "challenge" else state
        path = self.budget.config.solver_path
        if not path:
            return LookupResult(outcome=Outcome.CAPTCHA_FAILED, detail=f"{reason}; no solver")
        if self.budget.remaining() <= ANSWER_RESERVE:
            return LookupResult(outcome=Outcome.CAPTCHA_FAILED, detail=f"{reason}; no time left")
        site_key = (
            self.page.get_attribute(
                ".g-recaptcha[data-sitekey]", "data-sitekey", timeout=self.budget.ms(5)
            )
            or ""
        )
        self.budget.solving()
        try:
            token = _load(path)(site_key, self.page.url)
        except Exception as error:
            wait = getattr(error, "defer_seconds", None)
            if isinstance(wait, int | float) and wait > 0:
                # The solving service cannot serve the account (no balance, down, a bad
                # key; census.captcha.CaptchaServiceUnavailable carries ``defer_seconds``),
                # or no token was asked ahead for this attempt (``defer_reason``): not the
                # member's failure. Nothing was sent; the lookup waits, uncharged.
                why = getattr(error, "reason", "") or "unavailable"
                prefix = getattr(error, "defer_reason", "") or CAPTCHA_SERVICE_REASON
                return LookupResult(
                    outcome=Outcome.DEFERRED,
                    detail=_describe(error, self.cedula, f"{prefix}: {why}"),
                    retry_after=float(wait),
                    meta={"sent": False},
                )
            detail = _describe(error, self.cedula, f"{reason}; the solver failed")
            return LookupResult(outcome=Outcome.CAPTCHA_FAILED, detail=detail)
        finally:
            self.budget.solved()
        if not token:
            return LookupResult(
                outcome=Outcome.CAPTCHA_FAILED, detail=f"{reason}; the solver found no token"
            )
        # A token that knows its life (``census.captcha.pool.Token``): the consulta leaves
        # before it ends, or not at all.
        use_by = getattr(token, "use_by", None)
        self._use_by = float(use_by) if isinstance(use_by, int | float) else None
        callbacks = self.page.evaluate(_INJECT_TOKEN, [token, CHALLENGE_TITLE])
        self._facts["callbacks"] = int(callbacks or 0)
        try:
            self.page.wait_for_function(
                _SUBMIT_ENABLED,
                timeout=self.budget.ms(SUBMIT_ENABLED_WAIT),
                polling=100,
            )
        except PlaywrightTimeoutError:
            return LookupResult(
                outcome=Outcome.CAPTCHA_FAILED,
                detail=f"{reason}; the page did not take the solved token (submit disabled)",
            )
        events.emit(Event.CAPTCHA_SOLVED)
        return None

    def _answer(self) -> LookupResult:
        """Wait for the consulta response (or its failure); else read the rendered page."""
        next_look = time.monotonic() + 0.5
        while True:
            if (refused := self.refusal) is not None:
                return refused
            if self._consulta_left is not None:
                return off_site(self._consulta_left, "consulta")
            if self.responses:
                response = self.responses[0]
                if (elsewhere := self._redirected_off_site(response)) is not None:
                    return off_site(elsewhere, "consulta")
                declared = declared_size(response.headers)
                if declared is not None and declared > MAX_RESPONSE_BYTES:
                    self._facts.update(http_status=response.status, bytes=declared)
                    return oversized("consulta", declared)
                if response.request in self._finished or self.failures:
                    return self._read(response)  # a failed body: the rendered page
            if self.failures:
                self._facts["error"] = self.failures[0]
                if self._consulta_redirected():
                    return _unexpected_page(
                        "consulta:redirect",
                        "the site answered the consulta with a redirect; not followed",
                    )
                return LookupResult(
                    outcome=Outcome.CONNECTION_ERROR,
                    detail=f"the consulta request failed: {self.failures[0]}",
                )
            remaining = self.budget.remaining()
            if remaining <= 0:
                return _no_answer(self.budget.config.timeout)
            if time.monotonic() >= next_look:
                # No response seen (another endpoint?) but the page may show the answer.
                if not self.responses and self.page.evaluate(_RESULT_SHOWN):
                    self._facts["read"] = "rendered page"
                    return parse_rendered_page(page_html(self.page), self.cedula)
                next_look = time.monotonic() + 0.5
            self.page.wait_for_timeout(min(100.0, max(remaining * 1000, 1.0)))

    def _read(self, response: Response) -> LookupResult:
        headers = response.headers
        content_type = headers.get("content-type", "")
        self._facts.update(http_status=response.status, content_type=content_type)
        if (size := self._too_large(response)) is not None:
            self._facts["bytes"] = size
            return oversized("consulta", size)
        try:
            body = response.text()
        except PlaywrightError:
            # The body is gone (page replaced): the rendered page still has the answer.
            with contextlib.suppress(PlaywrightTimeoutError):
                self.page.wait_for_function(_RESULT_SHOWN, timeout=self.budget.ms(3))
            self._facts["read"] = "rendered page"
            return parse_rendered_page(page_html(self.page), self.cedula)
        self.body = body
        return parse_consulta(
            response.status,
            content_type,
            body,
            headers,
            self.cedula,
            max_retry_after=self.budget.config.max_retry_after,
        )

    def _too_large(self, response: Response) -> int | None:
        """The size of ``response``'s body when over ``MAX_RESPONSE_BYTES``, as declared or
        as received, else None; its body is not asked for."""
        declared = declared_size(response.headers)
        if declared is not None and declared > MAX_RESPONSE_BYTES:
            return declared
        try:
            received = int(response.request.sizes()["responseBodySize"])
        except (PlaywrightError, KeyError, TypeError, ValueError):
            return None
        return received if received > MAX_RESPONSE_BYTES else None

    def _consulta_redirected(self) -> bool:
        """Whether the consulta failed because it was answered with a redirect (which the
        page's fetch was told not to follow)."""
        try:
            self.page.wait_for_function(_CONSULTA_REDIRECTED, timeout=self.budget.ms(1))
        except PlaywrightError:  # a timeout too: a plain network failure
            return False
        return True

    def _redirected_off_site(self, response: Response) -> str | None:
        """The other origin a redirect answer points to, else None."""
        location = response.headers.get("location")
        if not 300 <= response.status < 400 or not location:
            return None
        target = urljoin(response.url, location)
        if allowed(target, self.budget.config.site_url):
            return None
        return _origin_text(target, self.cedula)

    def _on_site(self, url: str) -> bool:
        return same_origin(url, self.budget.config.site_url)

    def _left_site(self) -> LookupResult | None:
        """``unexpected_page`` when the page is no longer on the configured site's origin."""
        url = self.page.url
        if same_origin(url, self.budget.config.site_url):
            return None
        return off_site(_origin_text(url, self.cedula), "page")

    def _abort_off_site(self, route: Route) -> None:
        """A request to another origin: aborted before it leaves the browser, and counted."""
        where_to = _origin_text(route.request.url, self.cedula)
        self.aborted.append(where_to)
        if _is_consulta(route.request) and self._consulta_left is None:
            self._consulta_left = where_to  # the page sent the query elsewhere: aborted
        route.abort("blockedbyclient")

    def _close_socket(self, socket: WebSocketRoute) -> None:
        """A WebSocket to another origin: closed without ever connecting, and counted."""
        self.aborted.append(_origin_text(socket.url, self.cedula))
        socket.close()

    def _on_request(self, request: Request) -> None:
        """A redirect leaves the browser before any route sees it: note where the consulta
        went when it was sent off the site that way."""
        first = request.redirected_from
        if first is None or allowed(request.url, self.budget.config.site_url):
            return
        while first.redirected_from is not None:
            first = first.redirected_from
        if _is_consulta(first) and self._consulta_left is None:
            self._consulta_left = _origin_text(request.url, self.cedula)

    def _on_request_finished(self, request: Request) -> None:
        self._finished.append(request)

    def _on_response(self, response: Response) -> None:
        if _is_consulta(response.request) and self._on_site(response.url):
            self.responses.append(response)

    def _on_request_failed(self, request: Request) -> None:
        if _is_consulta(request) and self._on_site(request.url):
            self.failures.append(scrub(request.failure or "unknown network error", self.cedula))

    def _timed_out(self, error: PlaywrightTimeoutError) -> LookupResult:
        if (refused := self.refusal) is not None:
            # The submit click timed out while its request waited at a closed gate: nothing
            # was sent, so this is the gate's deferral, not the site's timeout.
            return refused
        if self.stage == "answer" and self.budget.remaining() <= 0.05:
            return _no_answer(self.budget.config.timeout)
        if self.slot is None and self.stage in OWN_STAGES:
            return deferred_for_own_slowness(_describe(error, self.cedula, f"stage {self.stage}"))
        return LookupResult(
            outcome=Outcome.TIMEOUT, detail=_describe(error, self.cedula, f"stage {self.stage}")
        )

    def _browser_error(self, error: PlaywrightError) -> LookupResult:
        detail = _describe(error, self.cedula, f"stage {self.stage}")
        if "net::ERR_" in str(error):
            return LookupResult(outcome=Outcome.CONNECTION_ERROR, detail=detail)
        return LookupResult(outcome=Outcome.TASK_FAILED, detail=f"browser error: {detail}")

    # -- stage reports -------------------------------------------------------------------------

    def _begin(self, name: str, started: float | None = None) -> None:
        self._open = (name, time.monotonic() if started is None else started)
        self._facts = {}

    def _end(self, ok: bool, facts: dict[str, Fact] | None = None, *, minus: float = 0.0) -> None:
        """Report the open stage with its facts so far and ``facts``; ``minus``: seconds of it
        spent elsewhere (the gate's wait, inside the submit)."""
        if self._open is None:
            return
        name, started = self._open
        merged = {**self._facts, **(facts or {})}
        self._open, self._facts = None, {}
        self._report(name, ok, max(time.monotonic() - started - minus, 0.0), merged)

    def _close_open_stage(self, result: LookupResult) -> None:
        """The flow ended in the open stage: it failed there, or (the answer) gave its verdict."""
        if self._open is None:
            return
        verdict: dict[str, Fact] = {"outcome": result.outcome.value}
        if self.aborted:
            verdict["aborted"] = len(self.aborted)
            verdict["aborted_origins"] = ", ".join(sorted(set(self.aborted)))
        unexpected = result.outcome is Outcome.UNEXPECTED_PAGE
        if unexpected:
            verdict["signature"] = result.meta.get("signature")
        name = self._open[0]
        if name == "answer" and result.outcome not in (Outcome.TIMEOUT, Outcome.TASK_FAILED):
            verdict["shape"] = "unknown" if unexpected else "known"
            self._end(result.outcome.is_answer, verdict)
            return
        if name == "submit":
            verdict["sent"] = "yes" if self.slot is not None else "no"
        self._end(False, {**verdict, "detail": result.detail})

    def _report(self, name: str, ok: bool, seconds: float, facts: dict[str, Fact]) -> None:
        report(self.on_stage, name, ok, seconds, facts, self.cedula)

    # -- snapshot ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The page as it is now (``observe.take_snapshot``), within the budget left."""
        return take_snapshot(self.page, self.cedula, self.body or "", self.budget.remaining())


def run_flow(
    page: Page,
    cedula: str,
    budget: LookupBudget,
    *,
    on_stage: OnStage | None = None,
    capture: Capture = "unexpected",
    on_step: OnStage | None = None,
) -> LookupResult:
    """Drive one lookup on ``page`` (a fresh context's page) within ``budget``; ``on_stage``
    (or ``on_step``, its old name) and ``capture`` as for ``PlaywrightScraper``."""
    on_stage = _stage_observer(on_stage, on_step, "run_flow")
    return _Flow(page, cedula, budget, on_stage=on_stage, capture=capture).run()


def _stage_observer(
    on_stage: OnStage | None, on_step: OnStage | None, where: str
) -> OnStage | None:
    """The observer a caller passed: ``on_stage``, or by its old name ``on_step`` (with a
    ``DeprecationWarning`` blamed on the caller's line); both is a ``TypeError``."""
    if on_step is None:
        return on_stage
    if on_stage is not None:
        raise TypeError(f"{where}() takes on_stage or on_step (its old name), not both")
    renamed(f"{where}(on_step=)", f"{where}(on_stage=)", stacklevel=4)
    return on_step


def __getattr__(name: str) -> Any:
    return resolve_renamed(__name__, name)


def missing_element(selectors: list[str], seconds: float | None = None) -> LookupResult:
    """``unexpected_page`` for a form that lacks an element the flow needs (``#documento``
    renamed, ...): the site has changed. Its signature names the first one missing."""
    names = [selector.lstrip("#") for selector in selectors]
    waited = f" within {seconds:g}s" if seconds is not None else ""
    return _unexpected_page(
        f"page:missing_element:{names[0]}",
        f"the page has no {', '.join(selectors)}{waited}: the form has changed",
    )


def off_site(where_to: str, where: str) -> LookupResult:
    """``unexpected_page`` for a flow that left the configured site: the page (its load
    redirected, or a later navigation; nothing is typed there) or the consulta (sent there
    by the page, and aborted; or redirected there by the site) is on ``where_to``, another
    origin."""
    what = "the page is" if where == "page" else "the consulta went"
    detail = f"{what} off the configured site, on {where_to}; nothing is read from there"
    return _unexpected_page(f"{where}:off_site", detail)


def oversized(where: str, size: int) -> LookupResult:
    """``unexpected_page`` for a page or consulta answer larger than ``MAX_RESPONSE_BYTES``:
    its body is not read."""
    what = "the page" if where == "page" else "the consulta's answer"
    detail = f"{what} is {size} bytes, over the {MAX_RESPONSE_BYTES}-byte limit: not read"
    return _unexpected_page(f"{where}:oversized", detail)


def _unexpected_page(signature: str, detail: str) -> LookupResult:
    """A page the flow's own checks found in no known shape, named by ``signature``."""
    return LookupResult(
        outcome=Outcome.UNEXPECTED_PAGE, detail=detail, meta={"signature": signature}
    )


def _origin_text(url: str, cedula: str) -> str:
    """``scheme://host:port`` of ``url`` (never its path or query, which may carry the
    number; a host naming it is scrubbed too), or its scheme alone when it has no origin."""
    parts = origin(url)
    if parts is None:
        return scrub(url.split(":", 1)[0][:20], cedula) or "(none)"
    scheme, host, port = parts
    return scrub(f"{scheme}://{host[:100]}:{port}", cedula)


def _is_consulta(request: Request) -> bool:
    return request.method == "POST" and urlsplit(request.url).path.rstrip("/").endswith(
        CONSULTA_PATH
    )


def _pick_election(choices: list[list[str]]) -> str:
    """The current-place election ("LUGAR DE VOTACION ACTUAL"), else the first one."""
    for value, label in choices:
        if "ACTUAL" in label.upper():
            return value
    return choices[0][0] if choices else "0"


def _no_answer(timeout: float) -> LookupResult:
    return LookupResult(
        outcome=Outcome.TIMEOUT, detail=f"no answer from the census site within {timeout:g}s"
    )


def _not_canonical(value: object) -> LookupResult:
    """``invalid_cedula`` for a value that is not canonical digits: ``normalize``'s reason when
    it is no cédula at all, else that it was not given in its canonical form."""
    try:
        normalize(value)
    except InvalidCedula as invalid:
        return LookupResult(outcome=Outcome.INVALID_CEDULA, detail=str(invalid))
    return LookupResult(
        outcome=Outcome.INVALID_CEDULA,
        detail=f"the scraper takes a cédula as its canonical digits ({MIN_DIGITS} to "
        f"{MAX_DIGITS} digits 0-9, no leading zero), not as written; got {mask(value)}",
    )


def _executable(playwright: Playwright, config: ScraperConfig) -> str:
    if config.executable:
        return config.executable
    try:
        bundled = playwright.chromium.executable_path
    except PlaywrightError:
        bundled = ""
    return bundled if bundled and Path(bundled).exists() else FALLBACK_EXECUTABLE


def _user_agent(version: str) -> str:
    major = version.split(".", 1)[0] or "130"
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major}.0.0.0 Safari/537.36"
    )


def _describe(error: BaseException, cedula: str, context: str) -> str:
    """One scrubbed, bounded line; Playwright's call logs repeat typed text (the cédula)."""
    first = (str(error).strip().splitlines() or [""])[0]
    return scrub(f"{context}: {type(error).__name__}: {first}", cedula)[:300]


def _load(path: str) -> Callable[[str, str], str | None]:
    """The callable at dotted ``path`` (the captcha solver)."""
    module, _, name = path.rpartition(".")
    solver: Callable[[str, str], str | None] = getattr(importlib.import_module(module), name)
    return solver


def _quietly(close: Callable[[], object]) -> None:
    # Closing after a failure may fail too; the driver cleans up what is left.
    with contextlib.suppress(Exception):
        close()
