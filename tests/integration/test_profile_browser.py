"""The profile page updates itself in a real Chromium while the lookup moves (asking less often
while nothing changes, through network errors), then stops asking; a member registers with
their leader's invite code and confirms by the mailed link, and their answer reaches their
leader's page as a notice (portal.followups.notify_leader on a real qcluster)."""

from __future__ import annotations

import email
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test.testcases import LiveServerThread

from census.cedula import mask
from census.models import CedulaInfo, FollowUp, Status
from portal import views
from portal.models import Member, Notice
from tests import factories
from tests.clusters import ClusterProcess

# The portal's pages in Chromium: what they show does not depend on the database.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.urls("example_site.urls"),
    pytest.mark.any_database,
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
def chromium(portal_url: str) -> Iterator[Any]:
    """Chromium (Debian's build, through Playwright), closed after the test.

    Request it after every fixture that touches the database: while Playwright runs, ORM
    calls on this thread raise ``SynchronousOnlyOperation`` (use ``_off_thread``).
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Any:
    """A page of its own in ``chromium``."""
    return chromium.new_page()


@pytest.fixture
def member(transactional_db: None) -> Any:
    """A member whose lookup is pending (the pipeline created it; no cluster runs it)."""
    user = factories.member(first_name="Ana")
    user.set_password(PASSWORD)
    user.save()
    return user


def _log_in(page: Any, portal_url: str, member: Any) -> None:
    page.goto(f"{portal_url}/entrar/")
    page.fill("#id_username", member.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit] >> text=Entrar")
    page.wait_for_url(f"{portal_url}/perfil/")


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

    _log_in(page, portal_url, member)
    status = page.get_by_test_id("census-status")
    assert status.inner_text() == "Pendiente"
    loaded = page.evaluate("performance.timeOrigin")

    _move(member, Status.SCRAPING)
    status.filter(has_text="Consultando").wait_for(timeout=60_000)

    _move(member, Status.FOUND, puesto="COLEGIO SAN JOSE", municipio="MEDELLIN", mesa="12")
    status.filter(has_text="Encontrada").wait_for(timeout=60_000)
    place = page.get_by_test_id("census-place")
    assert "COLEGIO SAN JOSE" in place.inner_text()
    assert "MEDELLIN" in place.inner_text()
    # Same document all along: the page updated itself, nobody reloaded it.
    assert page.evaluate("performance.timeOrigin") == loaded
    assert page.locator("#censo").get_attribute("data-final") == "true"

    asked = len(polls)
    page.wait_for_timeout(5_000)  # past the next two polls, had the page gone on asking
    assert len(polls) == asked, "the page kept polling after a final state"


#: The fetch calls of a page, as performance.now() times, in window.__polls.
COUNT_FETCHES = """
window.__polls = [];
const census_fetch = window.fetch;
window.fetch = (...args) => {
  window.__polls.push(performance.now());
  return census_fetch(...args);
};
"""


#: Every value the page gives data-next-poll from now on (null: removed), in window.__waits.
RECORD_WAITS = """
window.__waits = [];
new MutationObserver(() => {
  window.__waits.push(document.getElementById("censo").dataset.nextPoll ?? null);
}).observe(document.getElementById("censo"), {attributeFilter: ["data-next-poll"]});
"""


def test_profile_backs_off_while_nothing_changes_and_through_network_errors(
    member: Any, portal_url: str, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchanged answers and failed requests space the polls out (x1.5 up to the cap), the
    page keeps asking through network errors, a status change brings back the first
    interval, and the final status stops it, all in the same document."""
    monkeypatch.setattr(views, "POLL_INTERVAL_MS", 400)  # the live server runs in-process
    monkeypatch.setattr(views, "POLL_MAX_INTERVAL_MS", 1400)
    status_url = f"{portal_url}/perfil/censo.json"
    page.add_init_script(COUNT_FETCHES)
    _log_in(page, portal_url, member)
    box = page.locator("#censo")
    status = page.get_by_test_id("census-status")
    page.evaluate("window.__sinRecargar = 'marcado'")
    page.evaluate(RECORD_WAITS)

    # Three unchanged answers: 400 -> 600 -> 900 -> 1350 ms.
    page.wait_for_function("document.getElementById('censo').dataset.nextPoll === '1350'")
    # Failed requests: on to the cap, and still asking.
    page.route(status_url, lambda route: route.abort())
    page.wait_for_function("window.__polls.length >= 6", timeout=60_000)
    assert status.inner_text() == "Pendiente"
    page.unroute(status_url)
    _move(member, Status.SCRAPING)
    status.filter(has_text="Consultando").wait_for(timeout=60_000)
    _move(member, Status.FOUND, puesto="COLEGIO SAN JOSE", municipio="MEDELLIN", mesa="12")
    status.filter(has_text="Encontrada").wait_for(timeout=60_000)

    waits = page.evaluate("window.__waits")
    assert waits[:5] == ["600", "900", "1350", "1400", "1400"], waits
    reset = waits.index("400")  # the status changed: back to the first interval
    assert set(waits[3:reset]) == {"1400"}, waits
    assert waits[-1] is None, waits  # final: no next poll
    polls = page.evaluate("window.__polls")
    gaps = [b - a for a, b in zip(polls, polls[1:6], strict=False)]
    for gap, wait in zip(gaps, [600, 900, 1350, 1400, 1400], strict=True):
        # Each request starts once the one before ended and the wait is over (no upper
        # bound: a loaded machine may be late, never early).
        assert wait - 5 <= gap, (gaps, polls)
    assert box.get_attribute("data-final") == "true"
    assert page.evaluate("window.__sinRecargar") == "marcado"  # no reload
    asked = page.evaluate("window.__polls.length")
    page.wait_for_timeout(2_000)
    assert page.evaluate("window.__polls.length") == asked, "polling went on after final"


def _register(page: Any, portal_url: str, cedula: str, name: str, invite: str = "") -> None:
    """Register through the form, as a person would, then follow the mailed link and confirm:
    lands on the profile."""
    first, last = name.split(" ", 1)
    address = f"{first.lower()}@example.org"
    page.goto(f"{portal_url}/registro/")
    page.fill("#id_username", cedula)
    page.fill("#id_first_name", first)
    page.fill("#id_last_name", last)
    page.fill("#id_email", address)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    if invite:
        page.fill("#id_invite_code", invite)
    page.click("button[type=submit] >> text=Registrarme")
    page.wait_for_url(f"{portal_url}/entrar/")
    assert "Revisa tu correo para activar tu cuenta" in page.content()
    # The live server runs in this process: its mail is in Django's locmem outbox.
    [message] = [m for m in mail.outbox if m.to == [address]]
    link = re.search(r"http://\S+/registro/confirmar/\S+/", message.body)
    assert link, message.body
    page.goto(link.group(0))
    page.click("button[type=submit] >> text=Confirmar mi correo")
    page.wait_for_url(f"{portal_url}/perfil/")


def _wait_for_notice(member_cedula: str, cluster: ClusterProcess, timeout: float = 45) -> Notice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notice = _off_thread(lambda: Notice.objects.filter(member__username=member_cedula).first())
        if notice is not None:
            return notice
        time.sleep(0.3)
    raise AssertionError(f"no notice after {timeout} s\n{cluster.output()[-3000:]}")


def test_a_referred_members_answer_reaches_the_leader(
    portal_url: str,
    qcluster: Callable[..., ClusterProcess],
    tmp_path: Path,
    settings: Any,
    chromium: Any,
) -> None:
    """A leader and a member she referred (with her invite code) register in Chromium and
    confirm by the mailed link; a real qcluster (the fake scraper, the portal's follow-ups
    on) finds the member: the member's page turns final without a reload, the leader's page
    lists the notice (place, name, masked cédula), and one email went to the leader."""
    settings.CENSUS_IS_VERIFIED = "portal.verification.is_verified"
    leader_cedula, member_cedula = factories.cedula(), factories.cedula()
    mail_dir = tmp_path / "mail"
    cluster = qcluster(
        # The member's lookup runs 10 s: their page opens on a status that is not final.
        script={member_cedula: ["sleep:10"]},
        CENSUS_TEST_FOLLOW_UPS="1",
        CENSUS_TEST_EMAIL_DIR=str(mail_dir),
    )

    leader_page = chromium.new_context().new_page()
    _register(leader_page, portal_url, leader_cedula, "Luz Líder")
    # What an admin does: the role (registration makes members only) and an email address.
    _off_thread(
        lambda: Member.objects.filter(username=leader_cedula).update(
            role=Member.Role.LEADER, email="luz@example.org"
        )
    )
    leader_page.reload()
    assert "Todavía no hay avisos" in leader_page.content()
    invite = leader_page.get_by_test_id("invite-code").inner_text()

    member_page = chromium.new_context().new_page()
    _register(member_page, portal_url, member_cedula, "Ana Pérez", invite=invite)
    assert "Invitado por Luz Líder" in member_page.content()
    box = member_page.locator("#censo")
    assert box.get_attribute("data-final") == "false"
    member_page.evaluate("window.__sinRecargar = 'marcado'")
    member_page.get_by_test_id("census-status").filter(has_text="Encontrada").wait_for(
        timeout=45_000
    )
    assert member_page.evaluate("window.__sinRecargar") == "marcado"  # the same document
    assert box.get_attribute("data-final") == "true"
    assert "PUESTO" in member_page.get_by_test_id("census-place").inner_text()

    notice = _wait_for_notice(member_cedula, cluster)
    leader_page.reload()
    text = leader_page.get_by_test_id("notices").inner_text()
    assert "Ana Pérez" in text and mask(member_cedula) in text and "PUESTO" in text
    assert member_cedula not in leader_page.content()

    follow_ups = _off_thread(
        lambda: list(
            FollowUp.objects.filter(lookup__user__username=member_cedula).values_list(
                "path", "state", "tries"
            )
        )
    )
    assert follow_ups == [("portal.followups.notify_leader", FollowUp.State.SUCCEEDED, 1)]
    assert notice.key == f"census-followup-{notice.lookup_id}-1-1"
    # The email went out after the notice committed; the leader's own lookup (nobody
    # referred her) sent none.
    deadline = time.monotonic() + 60  # gives up only: a loaded machine may take long
    while not _off_thread(lambda: Notice.objects.get(pk=notice.pk).emailed_at):
        assert time.monotonic() < deadline, cluster.output()[-3000:]
        time.sleep(0.2)
    [mail] = list(mail_dir.iterdir())
    message = email.message_from_bytes(mail.read_bytes())
    body = message.get_payload(decode=True).decode()
    assert message["To"] == "luz@example.org"
    assert mask(member_cedula) in body and "PUESTO" in body
    assert member_cedula not in body and member_cedula not in message["Subject"]
