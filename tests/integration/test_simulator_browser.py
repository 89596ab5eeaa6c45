"""The simulator's page in real Chromium under each layout change."""

from __future__ import annotations

from pathlib import Path

import pytest

from census.testing import answers
from census.testing.simulator import (
    LAYOUT_KINDS,
    CensusSimulator,
    cedula_key,
)

# A page in Chromium, no database: one pass is enough.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.any_database]

ROOT = Path(__file__).resolve().parents[2]


def test_page_renders_a_found_answer_under_every_layout(sim: CensusSimulator) -> None:
    """In real Chromium, the page (its script and the checkbox frame) gets a token and shows
    the found table under the normal layout and under each layout change (off_site: on the
    other origin it redirected to)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    cedula = "1012345678"
    data = answers.found(cedula)["data"]
    expected = [
        data[key] for key in ("nuip", "nom_depto", "nom_mun", "nom_puesto", "direccion", "mesa")
    ]
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            for kind in (None, *LAYOUT_KINDS):
                sim.reset()
                sim.change_layout(kind)
                page = browser.new_page()
                page.set_default_timeout(30_000)
                page.goto(sim.url)
                field = "#numeroDocumento" if kind == "form_renamed" else "#documento"
                assert page.locator("#documento, #numeroDocumento").count() == 1
                page.fill(field, cedula)
                page.wait_for_function("document.getElementById('eleccion').value === '0'")
                frame = page.frame_locator('iframe[title="reCAPTCHA"]')
                frame.locator("#recaptcha-anchor").click()
                page.wait_for_function(
                    "(document.getElementById('g-recaptcha-response') || {}).value"
                )
                page.click("#submitBtn")
                page.locator("#resultado table").wait_for()
                cells = page.locator("#resultado tbody td").all_inner_texts()
                assert cells == expected, kind
                assert page.locator("#mensaje").is_hidden(), kind
                page.close()
                # The checkbox read the cédula from the (renamed) input; the answer was in kind
                # (off_site: the page moved to this simulator as localhost, the plain site).
                verify, answer = [r for r in sim.access_log if r.method == "POST"]
                assert verify.cedula_key == cedula_key(cedula), kind
                assert (answer.path, answer.scenario, answer.layout) == (
                    "/back/api/consulta",
                    "found",
                    "" if kind == "off_site" else kind or "",
                )
        finally:
            browser.close()
