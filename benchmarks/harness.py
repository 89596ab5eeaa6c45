"""What the measurements share: a fresh database, real qclusters, members, process trees.

Each measurement runs in a child process of the runner (``benchmarks/child.py``) whose
environment says which database to use (``CENSUS_TEST_DB``; PostgreSQL + Redis when
``CENSUS_TEST_DATABASE=postgres``, as in tests/settings.py) and carries the run's marker
(``CENSUS_BENCH_MARKER``), which every process it starts inherits: that is how the runner
finds anything left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
MARKER = "CENSUS_BENCH_MARKER"

_numbers = itertools.count(1)


def cedula(prefix: str = "10") -> str:
    """A fresh 10-digit cédula; prefix ``10`` is a plain "found" on the simulator."""
    return f"{prefix}{next(_numbers):0{10 - len(prefix)}d}"


# -- the database ---------------------------------------------------------------------------


def on_postgres() -> bool:
    return os.environ.get("CENSUS_TEST_DATABASE") == "postgres"


def _maintenance() -> Any:
    import psycopg

    url = os.environ.get("CENSUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    return psycopg.connect(url, autocommit=True)


def create_database() -> None:
    """An empty database named by ``CENSUS_TEST_DB`` (PostgreSQL; SQLite makes its file)."""
    if on_postgres():
        with _maintenance() as conn:
            conn.execute(f'CREATE DATABASE "{os.environ["CENSUS_TEST_DB"]}"')


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)


def drop_database() -> None:
    from django.db import connections

    connections.close_all()
    if on_postgres():
        with _maintenance() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{os.environ["CENSUS_TEST_DB"]}" WITH (FORCE)')
    else:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.environ["CENSUS_TEST_DB"] + suffix)


def purge_broker() -> None:
    """On Redis, the run's own queue (never ``cache.clear()``: that flushes a shared database)."""
    if os.environ.get("CENSUS_TEST_BROKER") == "redis":
        from django_q.brokers import get_broker

        with contextlib.suppress(Exception):
            get_broker().purge_queue()


# -- qclusters ------------------------------------------------------------------------------


class Clusters:
    """Real ``qcluster`` processes (tests/clusters.py's ClusterProcess), all stopped at exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.started: list[Any] = []
        #: Started since the last ``stop()``: what ``wait_ready`` waits for.
        self._starting: list[Any] = []

    def start(
        self, workers: int = 2, script: dict[str, list[str]] | None = None, **env: str
    ) -> Any:
        from tests.clusters import ClusterProcess

        env = {
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "CENSUS_BENCH_WORKERS": str(workers),
            **env,
        }
        if script is not None:
            env["CENSUS_FAKE_SCRIPT"] = json.dumps(script)
        cluster = ClusterProcess(self.work, env, name=f"-{len(self.started)}")
        cluster.workers = workers
        self.started.append(cluster)
        self._starting.append(cluster)
        cluster.start()
        return cluster

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every cluster started since the last ``stop()`` logged "running" and shows
        all its workers idle."""
        deadline = time.monotonic() + timeout
        for cluster in self._starting:
            while len(worker_processes(cluster)) < cluster.workers or "running" not in (
                cluster.output()
            ):
                if cluster.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"qcluster did not start:\n{cluster.output()[-3000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        for cluster in self.started:
            cluster.stop()
        self._starting.clear()


def worker_processes(cluster: Any) -> list[psutil.Process]:
    """The cluster's worker processes (their title says idle or processing; setproctitle)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(cluster.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                title = " ".join(child.cmdline())
                if title.startswith("qcluster Process-") and (
                    " idle" in title or " processing " in title
                ):
                    found.append(child)
    return found


# -- members and lookups --------------------------------------------------------------------


def register(numbers: list[str]) -> list[int]:
    """Members registered one transaction each, as the portal does; returns their lookup ids."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from census.models import CedulaInfo

    users = []
    for number in numbers:
        with transaction.atomic():
            users.append(get_user_model().objects.create_user(username=number))
    lookups = CedulaInfo.objects.filter(user__in=users).order_by("pk")
    return list(lookups.values_list("pk", flat=True))


def wait_final(ids: list[int], timeout: float, clusters: Clusters | None = None) -> None:
    """Until every lookup is in a final status; raises with the clusters' output otherwise."""
    from census.models import FINAL_STATUSES, CedulaInfo

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if CedulaInfo.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count() == len(ids):
            return
        time.sleep(0.1)
    tail = "".join(c.output()[-2000:] for c in clusters.started) if clusters else ""
    raise RuntimeError(f"lookups not final after {timeout:.0f} s\n{tail}")


# -- processes ------------------------------------------------------------------------------


def tree_memory_mb(process: psutil.Process) -> tuple[float, float]:
    """RSS and PSS of a process and its descendants, MB.

    The RSS sum counts pages the processes share (Chromium's, mostly) once per process; PSS
    splits each shared page between its sharers, so its sum is what the tree really holds.
    """
    rss = pss = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            memory = member.memory_full_info()
            rss += memory.rss
            pss += memory.pss
    return rss / 2**20, pss / 2**20


def marked_processes(marker: str) -> Iterator[psutil.Process]:
    """Running processes (zombies hold nothing) whose environment carries ``marker``."""
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                continue
            if process.environ().get(MARKER, "").startswith(marker):
                yield process
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
