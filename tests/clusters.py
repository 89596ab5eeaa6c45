"""Real ``manage.py qcluster`` processes for the tests, and helpers around them.

``ClusterProcess`` starts one cluster on the test database (its JSON log, its output, its
busy workers); ``browser_cluster`` starts one that drives Chromium against the simulator;
``register`` registers members (each queues its lookup) and ``wait_until_final`` polls until
their lookups are final; ``ConnectionCutter`` terminates every PostgreSQL connection to the
test database on a timer. ``ROOT`` is the repository's root. The ``qcluster`` fixture
(tests/conftest.py) starts clusters with ``ClusterProcess`` and stops them after the test;
benchmarks/harness.py uses ``ClusterProcess`` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
            # Lost and stalled work found in seconds, not half a minute (the default 30).
            "CENSUS_SWEEP_SECONDS": "10",
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

    def busy_workers(self, prefix: str = "census-lookup") -> list[Any]:
        """Worker processes whose title says they run a census task whose name starts
        with ``prefix`` (setproctitle): a lookup, or ``census-followup`` a follow-up."""
        import psutil

        assert self.process is not None
        busy = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if f"processing {prefix}" in " ".join(child.cmdline()):
                    busy.append(child)
        return busy

    def kill(self) -> None:
        """SIGKILL the whole cluster (its process group): what an OOM kill or a lost host does."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


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
        # Should a run's answers count as a changed site, its probe comes seconds later.
        "CENSUS_SITE_PROBE_SECONDS": "5",
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


class ConnectionCutter:
    """Terminates every connection to the test database (but the test's own) on a timer."""

    def __init__(self, every: float, times: int) -> None:
        self.every, self.times = every, times
        self.cut: list[int] = []
        self._stop = threading.Event()
        settings = connection.settings_dict
        self._dsn = {
            "host": settings["HOST"] or None,
            "port": settings["PORT"] or None,
            "user": settings["USER"] or None,
            "password": settings["PASSWORD"] or None,
            "dbname": settings["NAME"],
        }
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self._spare = cursor.fetchone()[0]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ConnectionCutter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(**{k: v for k, v in self._dsn.items() if v}, autocommit=True) as db:
            for _ in range(self.times):
                if self._stop.wait(self.every):
                    return
                rows = db.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid NOT IN (pg_backend_pid(), %s)",
                    [self._dsn["dbname"], self._spare],
                ).fetchone()
                self.cut.append(int(rows[0]) if rows else 0)
