"""Members sign up through django-allauth's own sign-up page over HTTP, with census's account
adapter (``tests.allauth_settings``): a real ``runserver`` serves the pages, a real qcluster
drives Chromium against the simulator, ``createsuperuser`` makes the admin, all on the test
database; the test keeps a person's cookies and posts each form back with its CSRF token."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from census.models import CedulaInfo, Status
from tests import factories
from tests.clusters import ROOT, browser_cluster, wait_until_final
from tests.evidence import assert_no_cedula_stored
from tests.sites import command_env

# allauth's pages, Chromium and the simulator: nothing here differs between databases.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.any_database,
]

SETTINGS = "tests.allauth_settings"
PASSWORD = "una-clave-bastante-larga"
#: What docs/allauth.md promises a member sees (the portal speaks es-co).
TAKEN = "Ya existe una cuenta con esta cédula."
INVALID = "La cédula no es válida: escribe solo el número, de 3 a 10 dígitos"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def dotted(number: str) -> str:
    """``1023456789`` written ``1.023.456.789``."""
    return f"{int(number):,}".replace(",", ".")


def allauth_env(**extra: str) -> dict[str, str]:
    """A ``python -m django`` process on ``tests.allauth_settings`` and the test database."""
    return {
        **command_env(),
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "CENSUS_TEST_DB": str(connection.settings_dict["NAME"]),
        **extra,
    }


def manage(*args: str, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=allauth_env(**env),
        check=True,
        capture_output=True,
        timeout=180,
    )


@pytest.fixture
def allauth_tables(transactional_db: None) -> Iterator[None]:
    """allauth's tables in the test database for the test, dropped after it: the suite's
    own settings do not know them."""
    manage("migrate", "--noinput")
    yield
    manage("migrate", "account", "zero", "--noinput")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def portal(allauth_tables: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``runserver`` on ``tests.allauth_settings``: its address and its output file."""
    port = _free_port()
    output = tmp_path / "runserver.out"
    with open(output, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=allauth_env(CENSUS_JSON_LOG=str(tmp_path / "runserver-events.jsonl")),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # gives up only: a loaded machine starts slowly
        while True:
            assert server.poll() is None, output.read_text()
            try:
                urllib.request.urlopen(f"{url}/accounts/signup/", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.2)
        yield url, output
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class Visitor:
    """A person's browser without JavaScript: keeps its cookies, follows no redirect."""

    class _Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    def __init__(self, url: str) -> None:
        self.url = url
        self._open = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), self._Stay()
        ).open

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Status, ``Location`` and body of a GET (or a POST of ``data``)."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self._open(f"{self.url}{path}", body, timeout=60) as response:
                return response.status, "", response.read().decode()
        except urllib.error.HTTPError as answer:  # a redirect not followed, or an error
            return answer.code, answer.headers.get("Location", ""), answer.read().decode()

    def submit(self, path: str, fields: dict[str, str]) -> tuple[int, str, str]:
        """Open the form at ``path`` and post ``fields`` with the CSRF token it carries."""
        status, _, page = self.request(path)
        assert status == 200, page
        token = CSRF_FIELD.search(page)
        assert token, page
        return self.request(path, {"csrfmiddlewaretoken": token.group(1), **fields})

    def sign_up(self, username: str) -> tuple[int, str, str]:
        return self.submit(
            "/accounts/signup/",
            {"username": username, "password1": PASSWORD, "password2": PASSWORD},
        )


def test_members_sign_up_through_allauth_and_their_lookups_end(
    portal: tuple[str, Path], qcluster: Any, census_site: Any, tmp_path: Path
) -> None:
    """Two members sign up (one typing dots): stored canonical, each lookup ends right with
    one consulta. A form posted without its CSRF token is refused; the first member's
    cédula typed with dots, and a username that is no cédula, are refused with the
    documented messages and make no user and no lookup. A superuser from ``createsuperuser
    --noinput`` gets no lookup. The dotted member logs in as typed. No full cédula in the
    database (but the user table) or any process's log."""
    url, server_output = portal
    cluster = browser_cluster(qcluster, census_site, DJANGO_SETTINGS_MODULE=SETTINGS)
    found, not_found = factories.cedula("10"), factories.cedula("20")
    users = get_user_model().objects

    for typed in (found, dotted(not_found)):
        status, location, page = Visitor(url).sign_up(typed)
        assert (status, location) == (302, "/accounts/profile/"), page
    member = users.get(username=not_found)  # the canonical form, not what was typed
    lookups = list(CedulaInfo.objects.order_by("pk").values_list("pk", flat=True))
    assert len(lookups) == 2

    stranger = Visitor(url)
    without_token = {"username": factories.cedula(), "password1": PASSWORD, "password2": PASSWORD}
    assert stranger.request("/accounts/signup/", without_token)[0] == 403  # CSRF is checked
    for typed, message in ((dotted(found), TAKEN), ("ana.perez", INVALID)):
        status, _, page = stranger.sign_up(typed)
        assert status == 200 and message in page, page
    assert users.count() == 2 and CedulaInfo.objects.count() == 2

    admin_log = tmp_path / "createsuperuser-events.jsonl"
    manage(
        "createsuperuser",
        "--noinput",
        DJANGO_SUPERUSER_USERNAME="admin",
        DJANGO_SUPERUSER_EMAIL="admin@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        CENSUS_JSON_LOG=str(admin_log),
    )
    admin = users.get(username="admin", is_superuser=True)
    assert not CedulaInfo.objects.filter(user=admin).exists()
    events = [json.loads(line) for line in admin_log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["lookup_skipped"], events

    infos = wait_until_final(lookups, cluster, timeout=120)
    assert [(i.user.username, i.status) for i in infos] == [
        (found, Status.FOUND),
        (not_found, Status.NOT_FOUND),
    ], [i.raw_response for i in infos]
    assert census_site.consulta_count(found) == census_site.consulta_count(not_found) == 1
    assert len(census_site.consultas()) == 2

    status, location, page = Visitor(url).submit(
        "/accounts/login/", {"login": dotted(not_found), "password": PASSWORD}
    )
    assert (status, location) == (302, "/accounts/profile/"), page
    assert users.get(pk=member.pk).last_login is not None

    assert_no_cedula_stored([found, not_found], cluster)
    server_events = tmp_path / "runserver-events.jsonl"
    logs = server_output.read_text() + admin_log.read_text() + server_events.read_text()
    assert found not in logs and not_found not in logs
