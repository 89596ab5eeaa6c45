"""``census_check_site``: one lookup through the real scraper and gate, stage by stage, and the
form shape check with its snapshot (``page:missing_element:...``).

Nine Chromium runs in all (found, not found, blocked, malformed, a form without #documento,
cancelled, HTTP 500, and two of the simulator's layout changes); the paused and bad-input
cases start no browser.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from census.gate.protocol import OpenGate
from census.management.commands.census_check_site import DEFAULT_CEDULA
from census.outcomes import Outcome
from census.scraper.base import ScraperConfig
from census.scraper.playwright import (
    LookupBudget,
    StageReport,
    launch_browser,
    new_lookup_context,
    run_flow,
)
from census.testing.simulator import CensusSimulator
from tests.sites import ANSWERED_STAGES, PNG_MAGIC, check_site, stages

# One lookup in Chromium, its gate row written once: nothing here differs between databases.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.any_database]


def _in_order(names: list[str], expected: list[str]) -> bool:
    """Whether ``expected`` appears in ``names`` in that order (other stages may come between)."""
    rest = iter(names)
    return all(name in rest for name in expected)


@pytest.mark.django_db(transaction=True)
def test_found_prints_each_stage_in_order_and_keeps_a_masked_page(
    checked_site: CensusSimulator, tmp_path: Path
) -> None:
    """Exit 0 for the default number (found); every stage is printed in flow order, then the
    verdict; the screenshot is a PNG and the HTML of the final page never holds the number."""
    out_dir = tmp_path / "check"
    code, out, _ = check_site("--site", checked_site.url, "--out", str(out_dir))
    assert code == 0, out
    printed = stages(out)
    assert _in_order([name for name, _ in printed], ANSWERED_STAGES), out
    assert all(status == "ok" for _, status in printed), out
    assert re.search(r"^  load\s+ok\s+\d+\.\d\d s  HTTP 200 /consultar/$", out, re.M), out
    assert "Answer: found (known shape)" in out
    assert re.search(r"^Total: \d+\.\d\d s$", out, re.M)
    screenshot, html = out_dir / "screenshot.png", out_dir / "page.html"
    assert f"{screenshot}" in out and f"{html}" in out
    assert screenshot.read_bytes().startswith(PNG_MAGIC)
    page = html.read_text(encoding="utf-8")
    assert "DEPARTAMENTO" in page  # the final page, with its answer table
    assert DEFAULT_CEDULA not in page and "*******678" in page
    assert DEFAULT_CEDULA not in out
    assert DEFAULT_CEDULA not in (out_dir / "body.txt").read_text(encoding="utf-8")
    assert len(checked_site.consultas()) == 1


@pytest.mark.django_db(transaction=True)
def test_not_found_is_a_known_shape_and_json_reports_it(checked_site: CensusSimulator) -> None:
    """A not-found answer (prefix 20) exits 0; --json prints one object with the stages, the
    outcome and the paths, the number masked."""
    code, out, err = check_site("--cedula", "2012345678", "--site", checked_site.url, "--json")
    assert code == 0, (out, err)
    report = json.loads(out)
    folder = Path(report["paths"]["screenshot"]).parent
    try:
        assert report["exit_code"] == 0 and report["outcome"] == "not_found"
        assert _in_order([stage["name"] for stage in report["stages"]], ANSWERED_STAGES)
        assert report["steps"] == report["stages"]  # the old key, until 0.3.0
        assert report["cedula"] == "*******678" and "2012345678" not in out + err
        assert Path(report["paths"]["screenshot"]).read_bytes().startswith(PNG_MAGIC)
        assert folder.parent == Path(tempfile.gettempdir())
        assert folder.name.startswith("census-check-site-")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.django_db(transaction=True)
def test_a_blocked_answer_is_a_site_failure(checked_site: CensusSimulator, tmp_path: Path) -> None:
    """A 429 (prefix 42) exits 4 and says the site failed, after sending the consulta."""
    code, out, _ = check_site(
        "--cedula", "4212345678", "--site", checked_site.url, "--out", str(tmp_path)
    )
    assert code == 4, out
    assert "Site failure: blocked (the consulta was sent)" in out
    assert len(checked_site.consultas()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_malformed_answer_means_the_site_changed(
    checked_site: CensusSimulator, tmp_path: Path
) -> None:
    """A truncated JSON answer (prefix 63) exits 3 with its signature printed, and its page
    and body are written."""
    code, out, _ = check_site(
        "--cedula", "6312345678", "--site", checked_site.url, "--out", str(tmp_path)
    )
    assert code == 3, out
    verdict = re.search(r"^Answer: unexpected_page, signature (\S+) \(the site may", out, re.M)
    assert verdict is not None, out
    assert verdict.group(1) in out.split("Answer:")[0]  # the answer stage printed it too
    assert (tmp_path / "body.txt").read_text(encoding="utf-8").startswith('{"ok": true')
    assert "6312345678" not in out


def test_a_form_without_documento_is_an_unexpected_page_with_a_snapshot(
    census_site: CensusSimulator,
) -> None:
    """The page's #documento renamed (a route rewrites the served HTML, which also echoes the
    number): unexpected_page page:missing_element:documento at once, not a fill timeout, with
    a snapshot whose HTML has the number masked and whose PNG is a PNG; nothing sent. An
    on_stage that raises does not break the lookup."""
    from playwright.sync_api import Route, sync_playwright

    cedula = "1012345679"
    config = ScraperConfig(site_url=census_site.url, timeout=25)
    reports: list[StageReport] = []
    rewritten: list[int] = []

    def on_stage(report: StageReport) -> None:
        reports.append(report)
        raise RuntimeError("a broken observer")

    def rename_documento(route: Route) -> None:
        response = route.fetch()
        html = response.text()
        rewritten.append(html.count('id="documento"'))
        html = html.replace('id="documento" name="documento"', 'id="numeroDocumento"')
        html = html.replace("</main>", f"<p>Documento {cedula}</p></main>")
        route.fulfill(response=response, body=html)

    with sync_playwright() as playwright:
        browser = launch_browser(playwright, config, 30_000)
        try:
            page = new_lookup_context(browser, 30_000).new_page()
            page.route(lambda url: urlsplit(url).path == "/consultar/", rename_documento)
            started = time.monotonic()
            result = run_flow(
                page, cedula, LookupBudget.start(config, OpenGate()), on_stage=on_stage
            )
            seconds = time.monotonic() - started
        finally:
            browser.close()
    assert rewritten == [1]
    assert result.outcome is Outcome.UNEXPECTED_PAGE, result.detail
    assert result.meta["signature"] == "page:missing_element:documento"
    assert result.meta["stage"] == "form" and result.meta["sent"] is False
    assert result.meta["step"] == "form"  # the old key, until 0.3.0
    assert seconds < 15  # no wait for an element that is not there
    assert [(r.name, r.ok) for r in reports][-1] == ("form", False)
    assert reports[-1].facts["missing"] == "documento"
    snapshot = result.snapshot
    assert snapshot is not None and snapshot.path == "/consultar/"
    assert 'id="numeroDocumento"' in snapshot.html  # the page as the flow saw it
    assert cedula not in snapshot.html and "Documento *******679" in snapshot.html
    assert snapshot.png is not None and snapshot.png.startswith(PNG_MAGIC)
    assert census_site.consultas() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("cedula", "layout", "code", "verdict"),
    [
        ("3012345678", None, 0, "Answer: cancelled (known shape)"),
        ("6212345678", None, 4, "Site failure: connection_error"),
        (DEFAULT_CEDULA, "wrapper", 3, "signature answer:missing_field:ok"),
        (DEFAULT_CEDULA, "form_renamed", 3, "signature page:missing_element:documento"),
    ],
)
def test_each_scenario_gets_its_exit_code_and_verdict(
    checked_site: CensusSimulator,
    tmp_path: Path,
    cedula: str,
    layout: str | None,
    code: int,
    verdict: str,
) -> None:
    """A cancelled cédula is a known shape, an HTTP 500 a site failure, and each layout
    change the simulator can make is reported as a change with its signature."""
    checked_site.change_layout(layout)
    got, out, _ = check_site("--cedula", cedula, "--site", checked_site.url, "--out", str(tmp_path))
    assert got == code, out
    assert verdict in out
    assert stages(out)[0][0] == "browser" and stages(out)[1] == ("load", "ok"), out
    assert (tmp_path / "screenshot.png").read_bytes().startswith(PNG_MAGIC)
