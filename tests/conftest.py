"""Fixtures and pytest hooks for the suite; the plain helpers live in tests/clusters.py.

Markers are registered in pyproject.toml ([tool.pytest.ini_options] markers); the hooks here
deselect what a pass's servers cannot run and say so in the report header.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from census.models import CedulaInfo
from census.testing.simulator import CensusSimulator
from tests.clusters import ClusterProcess
from tests.sites import SIM_RETRY_AFTER, SIM_SLOW_SECONDS


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


@pytest.fixture(scope="module")
def module_sim() -> Iterator[CensusSimulator]:
    """The simulator tests' simulator, one per module (tests/sites.py has its settings)."""
    with CensusSimulator(
        slow_seconds=SIM_SLOW_SECONDS, retry_after=SIM_RETRY_AFTER, captcha="click"
    ) as sim:
        yield sim


@pytest.fixture
def sim(module_sim: CensusSimulator) -> CensusSimulator:
    """``module_sim`` with its log and scenario state cleared."""
    module_sim.reset()
    return module_sim


@pytest.fixture
def checked_site(census_site: CensusSimulator, settings: Any) -> CensusSimulator:
    """``census_check_site``'s target: the session simulator; room for a loaded machine; no
    host-wide browser slots (other test runs on this host hold theirs)."""
    settings.CENSUS_SCRAPE_TIMEOUT = 25
    settings.CENSUS_BROWSERS_PER_HOST = 0
    return census_site


@pytest.fixture(autouse=True)
def _gate_in_test_transaction(request: pytest.FixtureRequest, monkeypatch: Any) -> None:
    """Inside pytest-django's per-test transaction the gate works in that transaction: its
    helper connection would not see the test's rows (and on SQLite would wait for its lock).
    Transactional tests and real processes use the helper, as production does."""
    from census.gate.store import GateStore

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


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The example portal's throttle clock (``portal.throttle``), moved by hand:
    ``clock[0] += 600``."""
    from portal import throttle

    now = [1_000_000.0]
    monkeypatch.setattr(throttle, "_now", lambda: now[0])
    return now


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


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (./test ending the pass that runs beside a failed one, a CI time limit) stops
    the run as Ctrl-C does: fixtures tear down, so no qcluster or browser outlives it."""
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = "redis" if getattr(settings, "ON_REDIS", False) else "orm"
    if _on_real_servers():
        note = (
            "; orm_broker tests deselected (they need the ORM broker's redelivery), "
            "any_database tests and most own_servers tests too (they run in the SQLite pass)"
        )
    else:
        note = "; scale and postgres_redis tests deselected (they need postgres + redis)"
    return f"census: database {database}, Django-Q2 broker {broker}{note}"


def _own_servers_elsewhere(item: pytest.Item, on_redis: bool) -> bool:
    """An ``own_servers`` test runs in one pass: the SQLite pass, or the PostgreSQL pass for
    ``own_servers(pass_="postgres")`` (a long one moved there to even the passes out)."""
    marker = item.get_closest_marker("own_servers")
    if marker is None:
        return False
    wanted = marker.kwargs.get("pass_", "sqlite")
    return (wanted == "postgres") != on_redis


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (and say so in the header) what this pass's servers cannot run.

    Scale and postgres_redis tests need PostgreSQL and Redis; orm_broker tests need the ORM
    broker; own_servers tests choose their databases themselves and any_database tests
    exercise nothing a database or broker changes, so the SQLite pass runs them. ./test runs
    both passes, so each test runs in one of them at least.
    """
    from django.conf import settings

    unfit: tuple[str, ...] = ()
    on_redis = bool(getattr(settings, "ON_REDIS", False))
    if on_redis:
        unfit = ("orm_broker", "any_database")
    if not _on_real_servers():
        unfit = ("scale", "postgres_redis")
    out = [
        item
        for item in items
        if any(item.get_closest_marker(name) for name in unfit)
        or _own_servers_elsewhere(item, on_redis)
    ]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [item for item in items if item not in out]
