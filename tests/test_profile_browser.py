"""The profile page updates itself in a real Chromium while the lookup moves, then stops asking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.testcases import LiveServerThread

from census.models import CedulaInfo, Status
from tests import factories

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.urls("example_site.urls"),
]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "una-clave-bastante-larga"


def _off_thread(work: Callable[[], Any]) -> Any:
    """Run ORM work on its own thread: Playwright's loop makes this thread look async."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # re-raised below, in the test's thread
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def portal_url(transactional_db: None, settings: Any) -> Iterator[str]:
    """The example portal served on a free loopback port for the test.

    Django's own ``LiveServerThread``, without pytest-django's ``live_server``: that one wraps
    the site in a static-files handler that needs ``STATIC_URL``, which tests.settings lacks.
    """
    settings.LOGIN_URL = "portal:login"
    server = LiveServerThread("127.0.0.1", static_handler=lambda app: app, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    yield f"http://127.0.0.1:{server.port}"
    server.terminate()


@pytest.fixture
def page(portal_url: str) -> Iterator[Any]:
    """A Chromium page (Debian's build, through Playwright), closed after the test.

    Request it after every fixture that touches the database: while Playwright runs, ORM
    calls on this thread raise ``SynchronousOnlyOperation``.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def member(transactional_db: None) -> Any:
    """A member whose lookup is pending (the pipeline created it; no cluster runs it)."""
    user = factories.member(first_name="Ana")
    user.set_password(PASSWORD)
    user.save()
    return user


def _move(member: Any, status: Status, **fields: str) -> None:
    """Put the lookup in ``status`` as the pipeline would (test data, written off-thread)."""
    _off_thread(
        lambda: CedulaInfo.objects.filter(user=member).update(status=status.value, **fields)
    )


def test_profile_follows_the_lookup_and_stops_polling(
    member: Any, portal_url: str, page: Any
) -> None:
    """Pending, then scraping, then found with the place appear without reload; polling stops."""
    status_url = f"{portal_url}/perfil/censo.json"
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic()) if r.url == status_url else None)

    page.goto(f"{portal_url}/entrar/")
    page.fill("#id_username", member.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit] >> text=Entrar")
    page.wait_for_url(f"{portal_url}/perfil/")
    status = page.get_by_test_id("census-status")
    assert status.inner_text() == "Pendiente"
    loaded = page.evaluate("performance.timeOrigin")

    _move(member, Status.SCRAPING)
    status.filter(has_text="Consultando").wait_for(timeout=10_000)

    _move(member, Status.FOUND, puesto="COLEGIO SAN JOSE", municipio="MEDELLIN", mesa="12")
    status.filter(has_text="Encontrada").wait_for(timeout=10_000)
    place = page.get_by_test_id("census-place")
    assert "COLEGIO SAN JOSE" in place.inner_text()
    assert "MEDELLIN" in place.inner_text()
    # Same document all along: the page updated itself, nobody reloaded it.
    assert page.evaluate("performance.timeOrigin") == loaded
    assert page.locator("#censo").get_attribute("data-final") == "true"

    asked = len(polls)
    page.wait_for_timeout(5_000)  # two and a half polling periods
    assert len(polls) == asked, "the page kept polling after a final state"
