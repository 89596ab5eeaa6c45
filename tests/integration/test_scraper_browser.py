"""PlaywrightScraper through real Chromium against the census simulator.

One test per outcome, the rate gate across two worker processes, Retry-After, and no browser
or driver process left behind after a lookup, a timeout, a stuck browser or a killed worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from django.test import override_settings

from census.conf import settings as census_settings
from census.gate.protocol import OpenGate
from census.outcomes import Outcome
from census.scraper import playwright as scraper_module
from census.scraper.base import LookupResult, Novedad
from census.scraper.playwright import PlaywrightScraper
from census.testing.simulator import CensusSimulator
from tests.sites import RETRY_AFTER, TIMEOUT, worker_process

# The browser against the simulator (an open gate, no database): one pass is enough.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.any_database]

ROOT = Path(__file__).resolve().parents[2]


class ProcessWatch:
    """Records every descendant of ``pid`` while active, to check later that all are gone."""

    def __init__(self, pid: int | None = None) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self.seen: dict[int, psutil.Process] = {}
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def snapshot(self) -> None:
        try:
            children = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            if child.pid not in self.seen:
                self.seen[child.pid] = child
                with contextlib.suppress(psutil.Error):
                    self.commands.append(" ".join(child.cmdline()))

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.snapshot()

    def saw_browser(self) -> bool:
        driver = any("run-driver" in command for command in self.commands)
        chromium = any("chromium" in command or "chrome" in command for command in self.commands)
        return driver and chromium

    def leftovers(self, wait: float = 5.0) -> list[psutil.Process]:
        """Descendants seen that are still running after ``wait`` seconds (zombies are dead)."""
        deadline = time.monotonic() + wait
        while True:
            alive = [p for p in self.seen.values() if _running(p)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.1)

    def profiles_left(self, wait: float = 5.0) -> list[str]:
        """Chromium's temporary profile directories that still exist after ``wait`` seconds."""
        paths = {
            arg.split("=", 1)[1]
            for command in self.commands
            for arg in command.split()
            if arg.startswith("--user-data-dir=")
        }
        deadline = time.monotonic() + wait
        while True:
            left = sorted(path for path in paths if Path(path).exists())
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def kill_all(self) -> None:
        for process in self.seen.values():
            if _running(process):
                process.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _lookup(cedula: str, **scraper: object) -> tuple[LookupResult, ProcessWatch]:
    watch = ProcessWatch()
    try:
        with watch:
            config = census_settings.scraper_config()  # the settings as the test overrides them
            result = PlaywrightScraper(gate=OpenGate(), config=config, **scraper).lookup(cedula)  # type: ignore[arg-type]
        assert watch.saw_browser(), watch.commands
        assert watch.leftovers() == []
        assert watch.profiles_left() == []
    finally:
        watch.kill_all()
    # Answers echo the number; nothing of it may come back.
    assert cedula not in repr(result)
    return result, watch


@dataclass(frozen=True)
class Expected:
    cedula: str
    outcome: Outcome
    consultas: int = 1
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.cedula[:2]}-{self.outcome.value}"


@pytest.mark.parametrize(
    "case",
    [
        Expected("1000000001", Outcome.FOUND),
        Expected("1100000001", Outcome.FOUND),
        Expected("1200000001", Outcome.FOUND),
        Expected("2000000001", Outcome.NOT_FOUND, detail="no se encuentra en el censo"),
        Expected("3000000001", Outcome.CANCELLED),
        Expected("3100000001", Outcome.CANCELLED),
        Expected("3200000001", Outcome.CANCELLED),
        Expected("4000000001", Outcome.BLOCKED, detail="F5 block page"),
        Expected("4100000001", Outcome.BLOCKED, detail="HTTP 403"),
        Expected("4200000001", Outcome.BLOCKED, detail="HTTP 429"),
        Expected("5000000001", Outcome.CAPTCHA_FAILED, consultas=0, detail="image challenge"),
        Expected("5100000001", Outcome.CAPTCHA_FAILED, detail="captcha"),
        Expected("6100000001", Outcome.CONNECTION_ERROR, detail="ERR_CONNECTION_RESET"),
        Expected("6200000001", Outcome.CONNECTION_ERROR, detail="HTTP 500"),
        Expected("6300000001", Outcome.UNEXPECTED_PAGE),
    ],
    ids=str,
)
def test_outcome(site: CensusSimulator, case: Expected) -> None:
    """Each simulator scenario gives its outcome through real Chromium, leaving no process."""
    result, _ = _lookup(case.cedula)
    assert result.outcome is case.outcome, result.detail
    assert case.detail in result.detail
    assert len(site.consultas()) == case.consultas
    # The page and the election list loaded like a person's browser would.
    assert any(r.path == "/back/api/elecciones" for r in site.access_log)


def test_found_places_come_back_as_sent(site: CensusSimulator) -> None:
    """A found lookup returns the place the simulator sent, field by field."""
    plain, _ = _lookup("1000000002")
    assert plain.place is not None
    assert plain.place.departamento and plain.place.municipio and plain.place.mesa
    assert plain.place.puesto.startswith("PUESTO ")
    # The real answer that put a locality in nom_puesto and the school in direccion.
    locality, _ = _lookup("1100000002")
    assert locality.place is not None
    assert locality.place.municipio == "BOGOTA. D.C."
    assert not locality.place.puesto.startswith("PUESTO ")
    assert any(word in locality.place.direccion for word in ("COLEGIO", "INSTITUCION", "ESCUELA"))
    upper, _ = _lookup("1200000002")
    assert upper.place is not None and upper.place.departamento and upper.place.mesa


def test_cancelled_reasons(site: CensusSimulator) -> None:
    """Each cancelled scenario returns its novedad text."""
    reasons = {}
    for cedula in ("3000000002", "3100000002", "3200000002"):
        result, _ = _lookup(cedula)
        assert isinstance(result.novedad, Novedad)
        assert result.novedad.resolucion and result.novedad.fecha_novedad
        reasons[cedula[:2]] = result.novedad.novedad
    assert reasons == {
        "30": "Cancelada por Muerte",
        "31": "Cancelada por Doble Cedulación",
        "32": "Cancelada por Pérdida o Suspensión de los Derechos Políticos",
    }


def test_blocked_429_keeps_retry_after(site: CensusSimulator) -> None:
    """A 429 comes back blocked with the Retry-After the site sent."""
    result, _ = _lookup("4200000002")
    assert result.outcome is Outcome.BLOCKED
    assert result.retry_after == RETRY_AFTER


def test_captcha_solver_gets_past_the_challenge(site: CensusSimulator) -> None:
    """A configured solver's token gets a challenged lookup to its answer."""
    with override_settings(CENSUS_CAPTCHA_SOLVER="census.testing.simulator.solve_captcha"):
        result, _ = _lookup("5000000002")
    assert result.outcome is Outcome.FOUND, result.detail
    assert len(site.consultas()) == 1


def test_slow_answer_is_a_timeout_within_the_scrape_timeout(site: CensusSimulator) -> None:
    """An answer slower than the scrape timeout is a timeout, with the consulta sent once."""
    # Long enough for a loaded machine to reach the submit; far below the 60 s slow answer.
    with override_settings(CENSUS_SCRAPE_TIMEOUT=12):
        result, _ = _lookup("6000000001")
    assert result.outcome is Outcome.TIMEOUT, result.detail
    assert "within 12s" in result.detail  # the scrape timeout ended it, not the 60 s answer
    assert len(site.consultas()) == 1


def test_flaky_reset_then_found(site: CensusSimulator) -> None:
    """A connection reset is connection_error; the next lookup is found."""
    first, _ = _lookup("7120000001")
    second, _ = _lookup("7120000001")
    assert (first.outcome, second.outcome) == (Outcome.CONNECTION_ERROR, Outcome.FOUND)


_release_stuck_solver = threading.Event()
_solver_entered = threading.Event()


def stuck_solver(site_key: str, page_url: str) -> str | None:
    """A solver that hangs: the browser thread never comes back on its own."""
    _solver_entered.set()
    _release_stuck_solver.wait(60)
    return None


def test_stuck_browser_is_killed(site: CensusSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A browser thread stuck past the scrape timeout is killed; the lookup is a timeout."""
    monkeypatch.setattr(scraper_module, "CLOSE_GRACE", 1.0)
    _release_stuck_solver.clear()
    _solver_entered.clear()
    try:
        # Long enough for a loaded machine to reach the captcha; the solver then hangs.
        # The page's budget stops while the solver runs, for CENSUS_CAPTCHA_SOLVE_TIMEOUT.
        with override_settings(
            CENSUS_SCRAPE_TIMEOUT=15,
            CENSUS_CAPTCHA_SOLVER=f"{__name__}.stuck_solver",
            CENSUS_CAPTCHA_SOLVE_TIMEOUT=2,
        ):
            result, _ = _lookup("5000000003")
    finally:
        _release_stuck_solver.set()
    assert _solver_entered.is_set(), result.detail
    assert result.outcome is Outcome.TIMEOUT, result.detail
    assert "killed" in result.detail


@pytest.mark.parametrize("cedula", ["12", "abc", "12345678901", "", "1.2", "10 00 00 000 01"])
def test_invalid_cedulas_are_never_sent(site: CensusSimulator, cedula: str) -> None:
    """Values that are not cédulas are invalid_cedula and reach no page."""
    result = PlaywrightScraper(gate=OpenGate(), config=census_settings.scraper_config()).lookup(
        cedula
    )
    assert result.outcome is Outcome.INVALID_CEDULA
    assert "3 to 10 digits" in result.detail
    assert site.access_log == []


_WORKER = r"""
import sys, time
import django
django.setup()
from census.conf import settings
from census.gate.protocol import OpenGate
from census.scraper.playwright import PlaywrightScraper
from django_q.exceptions import TimeoutException
from django_q.timeout import TimeoutHandler
mode, cedulas = sys.argv[1], sys.argv[2:]
try:
    with TimeoutHandler(600):  # Django-Q2's own task timeout handler (SIGALRM)
        PlaywrightScraper(gate=OpenGate(), config=settings.scraper_config()).lookup(cedulas[0])
    print("FINISHED", flush=True)
except TimeoutException:
    print("INTERRUPTED", flush=True)
time.sleep(120)
"""


def _worker(site: CensusSimulator, *args: str, **env: str) -> subprocess.Popen[str]:
    """A process standing in for a Django-Q2 worker that runs lookups."""
    return worker_process(_WORKER, site, *args, **env)


def _wait_for_consulta(site: CensusSimulator, watch: ProcessWatch, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not site.consultas():
        assert time.monotonic() < deadline, "the worker never sent its consulta"
        time.sleep(0.1)
    watch.snapshot()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "SIGALRM"])
def test_no_browser_outlives_a_killed_or_timed_out_worker(site: CensusSimulator, how: str) -> None:
    # A slow answer keeps the browser busy until the signal; the scraper's own timeout is
    # far away, as when Django-Q2's task timeout or its guard strikes first.
    """No driver or Chromium survives a worker killed by SIGTERM, SIGKILL or SIGALRM."""
    worker = _worker(site, "hold", "6000000002", CENSUS_SCRAPE_TIMEOUT="60")
    watch = ProcessWatch(worker.pid)
    try:
        with watch:
            _wait_for_consulta(site, watch)
        assert watch.saw_browser(), watch.commands
        # Django-Q2 signals the worker pid only, never its process group.
        os.kill(worker.pid, getattr(signal, how))
        if how == "SIGALRM":
            assert worker.stdout is not None
            lines = [worker.stdout.readline().strip()]
            while lines[-1] and lines[-1] != "INTERRUPTED":  # log lines may come first
                lines.append(worker.stdout.readline().strip())
            assert lines[-1] == "INTERRUPTED", lines
            assert worker.poll() is None  # the worker lives on; its browser must not
        assert watch.leftovers(wait=5.0) == []
        assert watch.profiles_left() == []
    finally:
        worker.kill()
        worker.communicate(timeout=10)
        watch.kill_all()


@pytest.mark.parametrize(
    ("body", "screenshot"),
    [
        ("<p>Documento 1.234.567.890</p>", True),  # one text node: masked on the page
        ("<p>Documento <b>1.234</b>.567.890</p>", False),  # across elements: no picture
        ("<p>Documento 1&nbsp;234&nbsp;567&nbsp;890</p>", True),
    ],
)
def test_a_snapshot_never_shows_the_number(body: str, screenshot: bool) -> None:
    """In real Chromium: the kept HTML has the number masked whatever its markup, and the
    screenshot is taken only when every echo in the rendered text could be masked."""
    from playwright.sync_api import sync_playwright

    from census.cedula import scrub
    from census.scraper.observe import take_snapshot

    cedula = "1234567890"
    with sync_playwright() as playwright:
        browser = scraper_module.launch_browser(
            playwright, census_settings.scraper_config(), TIMEOUT * 1000
        )
        try:
            page = browser.new_page()
            page.set_content(f"<html><body>{body}<p>Mesa 3</p></body></html>")
            snapshot = take_snapshot(page, cedula, body="", remaining=TIMEOUT)
            shown = page.evaluate("document.body.innerText")
        finally:
            browser.close()
    assert "*******890" in snapshot.html and scrub(snapshot.html, cedula) == snapshot.html
    assert (snapshot.png is not None) is screenshot
    if screenshot:  # what the picture shows: the page after masking
        assert "*******890" in shown and scrub(shown, cedula) == shown
