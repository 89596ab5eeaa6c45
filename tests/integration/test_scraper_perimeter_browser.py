"""The scraper stays on the site, in real Chromium against the simulator.

The simulator's other origin (``elsewhere``) is a second simulator on another port: a
look-alike of the site whose access log shows whatever reached it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Response

from census.outcomes import Outcome
from census.scraper.observe import StageReport
from census.testing.simulator import (
    THIRD_PARTY_IMAGE,
    THIRD_PARTY_SCRIPT,
    CensusSimulator,
    cedula_key,
)
from tests.integration.test_scraper_browser import _lookup
from tests.sites import RETRY_AFTER

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.any_database]


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[CensusSimulator]:
    """Another origin (same address, another port) serving a copy of the site."""
    with CensusSimulator(captcha="click") as other:
        yield other


@pytest.fixture(scope="module")
def simulator(elsewhere: CensusSimulator) -> Iterator[CensusSimulator]:
    """The site, whose off-site layouts and scenario point at ``elsewhere``."""
    with CensusSimulator(
        slow_seconds=60.0, retry_after=RETRY_AFTER, captcha="click", elsewhere=elsewhere.base_url
    ) as site:
        yield site


@pytest.fixture
def other(elsewhere: CensusSimulator) -> CensusSimulator:
    """``elsewhere`` with its access log cleared."""
    elsewhere.reset()
    return elsewhere


def _carried(other: CensusSimulator, cedula: str) -> list[str]:
    """The requests ``other`` received that carried ``cedula`` (typed in a form or posted)."""
    key = cedula_key(cedula)
    return [f"{r.method} {r.path}" for r in other.access_log if r.cedula_key == key]


def test_a_third_party_script_and_image_are_aborted_and_counted(
    site: CensusSimulator, other: CensusSimulator
) -> None:
    """A page that loads a script and an image from another origin: both are aborted in the
    browser (the other origin gets nothing), counted in the result and the last stage's
    facts, and the lookup still gets its answer."""
    site.change_layout("third_party")
    reports: list[StageReport] = []
    result, _ = _lookup("1000000021", on_stage=reports.append)
    assert result.outcome is Outcome.FOUND, result.detail
    assert other.access_log == []
    assert result.meta["aborted"] == 2
    answer = next(r for r in reports if r.name == "answer")
    assert answer.facts["aborted"] == 2
    assert answer.facts["aborted_origins"] == other.base_url
    # What was aborted was the page's own: the script and the image.
    assert {r.path for r in site.access_log} >= {"/consultar/", "/back/api/consulta"}
    assert THIRD_PARTY_SCRIPT not in {r.path for r in site.access_log}
    assert THIRD_PARTY_IMAGE not in {r.path for r in site.access_log}


def test_a_page_redirected_to_another_origin_is_unexpected_and_gets_no_cedula(
    site: CensusSimulator, other: CensusSimulator
) -> None:
    """The site's page redirects to a look-alike on another origin: the lookup ends as
    ``unexpected_page`` (``page:off_site``) before the fill, and the look-alike never gets
    the cédula (no checkbox click, no consulta)."""
    site.change_layout("off_site")
    cedula = "1000000022"
    result, _ = _lookup(cedula)
    assert result.outcome is Outcome.UNEXPECTED_PAGE, result.detail
    assert result.meta["signature"] == "page:off_site"
    assert result.meta["stage"] == "load" and result.meta["sent"] is False
    assert other.base_url.split("//")[1] in result.detail
    # The redirect itself is followed by the browser: the look-alike served its page...
    assert [r.path for r in other.access_log][:1] == ["/consultar/"]
    # ...and got nothing that carries the number.
    assert _carried(other, cedula) == [] and other.consultas() == []
    assert site.consultas() == []


def test_a_consulta_redirected_to_another_origin_is_unexpected(
    site: CensusSimulator, other: CensusSimulator
) -> None:
    """The site answers the consulta with a 307 to another origin: the redirect is not
    followed (Chromium would post the query there again), and the lookup is
    ``unexpected_page`` (``consulta:redirect``)."""
    cedula = "9000000023"
    result, _ = _lookup(cedula)
    assert result.outcome is Outcome.UNEXPECTED_PAGE, result.detail
    assert result.meta["signature"] == "consulta:redirect"
    assert len(site.consultas()) == 1
    assert _carried(other, cedula) == [] and other.consultas() == []


@pytest.mark.parametrize(
    ("cedula", "declares"),
    [("8400000024", "Content-Length: 8 MiB"), ("8900000024", "no Content-Length, 3 MiB")],
)
def test_an_oversized_answer_is_unexpected_and_never_read(
    site: CensusSimulator, monkeypatch: pytest.MonkeyPatch, cedula: str, declares: str
) -> None:
    """A consulta answer over the size limit, declared or not: ``unexpected_page``
    (``consulta:oversized``), its body never asked of the browser, nothing parsed."""
    read: list[str] = []
    for name in ("text", "body", "json"):
        monkeypatch.setattr(Response, name, _counting(getattr(Response, name), name, read))
    result, _ = _lookup(cedula)
    assert result.outcome is Outcome.UNEXPECTED_PAGE, result.detail
    assert result.meta["signature"] == "consulta:oversized", declares
    assert "not read" in result.detail
    assert read == []
    assert result.snapshot is not None and result.snapshot.body == ""


def _counting(
    read_body: Callable[[Response], object], name: str, calls: list[str]
) -> Callable[[Response], object]:
    """``read_body`` (``Response.text``, ...) that notes each call in ``calls``."""

    def counted(response: Response) -> object:
        calls.append(name)
        return read_body(response)

    return counted
