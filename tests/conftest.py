"""Fixtures for tests that run real qcluster processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from census.models import CedulaInfo

ROOT = Path(__file__).resolve().parent.parent


class ClusterProcess:
    """A real ``manage.py qcluster`` on the test database, stopped by the fixture."""

    def __init__(self, tmp_path: Path, env: dict[str, str], name: str = "") -> None:
        self.log_path = tmp_path / f"events{name}.jsonl"
        self.output_path = tmp_path / f"qcluster{name}.out"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'example'}",
            "CENSUS_TEST_DB": str(connection.settings_dict["NAME"]),
            "CENSUS_FAKE_STATE_DIR": str(tmp_path / "fake-state"),
            "CENSUS_JSON_LOG": str(self.log_path),
            "CENSUS_LOG_LEVEL": "INFO",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ClusterProcess:
        with open(self.output_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "django", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so nothing outlives the test
            )
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def events(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def busy_workers(self) -> list[Any]:
        """Worker processes whose title says they run a census lookup (setproctitle)."""
        import psutil

        assert self.process is not None
        busy = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "processing census-lookup" in " ".join(child.cmdline()):
                    busy.append(child)
        return busy

    def kill(self) -> None:
        """SIGKILL the whole cluster (its process group): what an OOM kill or a lost host does."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def qcluster(tmp_path: Path) -> Iterator[Callable[..., ClusterProcess]]:
    """Factory: ``qcluster(script={cedula: [outcomes]}, env={...})`` starts a real cluster."""
    started: list[ClusterProcess] = []

    def start(script: dict[str, list[str]] | None = None, **env: str) -> ClusterProcess:
        if script is not None:
            env["CENSUS_FAKE_SCRIPT"] = json.dumps(script)
        cluster = ClusterProcess(tmp_path, env, name=f"-{len(started)}" if started else "")
        cluster.start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def browser_cluster(qcluster: Any, site: Any, **env: str) -> ClusterProcess:
    """A real qcluster (2 workers) running Chromium against the simulator."""
    settings = {
        "CENSUS_SCRAPER": "census.scraper.playwright.PlaywrightScraper",
        "CENSUS_SITE_URL": site.url,
        "CENSUS_RATE_LIMIT_SECONDS": "1",
        # Room for a loaded 2-core machine: a lookup takes 2 to 5 s when it is not.
        "CENSUS_SCRAPE_TIMEOUT": "25",
        "CENSUS_RETRY_DELAYS": "2,3,4",
        "CENSUS_BLOCK_BACKOFF_SECONDS": "3",
        "CENSUS_BLOCK_BACKOFF_MAX_SECONDS": "12",
        "CENSUS_MAX_RETRY_AFTER_SECONDS": "5",
        **env,
    }
    return qcluster(**settings)


def register(numbers: list[str]) -> list[int]:
    """Members register (each commit queues its lookup); returns the lookup ids."""
    from tests import factories

    return [CedulaInfo.objects.get(user=factories.member(username=n)).pk for n in numbers]


def wait_until_final(
    lookup_ids: list[int], cluster: ClusterProcess, timeout: float = 60
) -> list[CedulaInfo]:
    """Poll the database until every lookup is in a final status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = list(CedulaInfo.objects.filter(pk__in=lookup_ids).order_by("pk"))
        if len(infos) == len(lookup_ids) and all(i.current_status.is_final for i in infos):
            return infos
        time.sleep(0.2)
    states = list(CedulaInfo.objects.filter(pk__in=lookup_ids).values_list("pk", "status"))
    raise AssertionError(f"not final after {timeout}s: {states}\n{cluster.output()[-3000:]}")


@pytest.fixture(autouse=True)
def _gate_in_test_transaction(request: pytest.FixtureRequest, monkeypatch: Any) -> None:
    """Inside pytest-django's per-test transaction the gate works in that transaction: its
    helper connection would not see the test's rows (and on SQLite would wait for its lock).
    Transactional tests and real processes use the helper, as production does."""
    from census.gatestore import GateStore

    marker = request.node.get_closest_marker("django_db")
    if marker is None or "transactional_db" in request.fixturenames:
        return
    transactional = marker.kwargs.get("transaction", marker.args[0] if marker.args else False)
    if not transactional:
        monkeypatch.setattr(GateStore, "inline_default", True)


@pytest.fixture(autouse=True)
def _close_gate_connections() -> Iterator[None]:
    """The gate's helper keeps a connection open; the test database must be droppable."""
    yield
    from census import database

    database.close_helpers()


@pytest.fixture(autouse=True)
def _fresh_script() -> None:
    """The fake scraper's in-process script positions start from zero in every test."""
    from census.testing import fake

    fake.reset()


@pytest.fixture
def scripted(settings: Any) -> dict[str, list[str]]:
    """The fake scraper's script: cédula -> its outcomes, in order."""
    settings.CENSUS_FAKE_SCRIPT = {}
    return settings.CENSUS_FAKE_SCRIPT


@pytest.fixture
def new_lookup(django_capture_on_commit_callbacks: Any, scripted: dict[str, list[str]]) -> Any:
    """Factory: register a member whose lookup answers ``steps``; returns the lookup."""
    from tests import factories

    def make(*steps: str, username: str | None = None) -> CedulaInfo:
        number = username or factories.cedula()
        scripted[number] = list(steps) or ["found"]
        with django_capture_on_commit_callbacks(execute=True):
            user = factories.member(username=number)
        return CedulaInfo.objects.get(user=user)

    return make


@pytest.fixture(autouse=True)
def _empty_broker(settings: Any) -> Iterator[None]:
    """On the Redis broker the queue outlives each test's rollback: start every test empty."""
    if getattr(settings, "ON_REDIS", False):
        from django.core.cache import cache
        from django_q.brokers import get_broker

        get_broker().purge_queue()
        cache.clear()
    yield


def _on_real_servers() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "ON_POSTGRES", False) and getattr(settings, "ON_REDIS", False))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "orm_broker: needs the ORM broker's redelivery of prefetched tasks (the Redis broker "
        "never redelivers); runs in ./test's SQLite pass",
    )
    config.addinivalue_line(
        "markers",
        "own_servers: picks its databases itself (./bench), so it runs in one pass only: "
        "./test's SQLite pass",
    )
    config.addinivalue_line(
        "markers",
        "scale: several qclusters on PostgreSQL and the Redis broker; runs in ./test's "
        "PostgreSQL pass (CENSUS_TEST_DATABASE=postgres CENSUS_TEST_BROKER=redis)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = "redis" if getattr(settings, "ON_REDIS", False) else "orm"
    if _on_real_servers():
        note = (
            "; orm_broker tests deselected (they need the ORM broker's redelivery), "
            "own_servers tests too (they run in the SQLite pass)"
        )
    else:
        note = "; scale tests deselected (they need postgres + redis)"
    return f"census: database {database}, Django-Q2 broker {broker}{note}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (and say so in the header) what this pass's servers cannot run.

    Scale tests need PostgreSQL and Redis; orm_broker tests need the ORM broker; own_servers
    tests choose their databases themselves, so the SQLite pass runs them. ./test runs both
    passes, so each test runs in one of them.
    """
    from django.conf import settings

    unfit: tuple[str, ...] = ()
    if getattr(settings, "ON_REDIS", False):
        unfit = ("orm_broker", "own_servers")
    if not _on_real_servers():
        unfit = ("scale",)
    out = [item for item in items if any(item.get_closest_marker(name) for name in unfit)]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [item for item in items if item not in out]
