"""What several hosts sharing one database meet: clocks that differ, connections that drop.

Real processes on the real servers (PostgreSQL, the Redis broker): qclusters with Chromium
against the simulator, one of them under libfaketime with its clock seconds off, and the
database's connections terminated under running attempts (``pg_terminate_backend``). Each
test counts what the site received (its access log) against what the database says.
Runs in ./test's PostgreSQL pass (marker ``scale``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from census.models import Attempt, Status
from census.testing.simulator import CensusSimulator, cedula_key
from tests import factories
from tests.clusters import ConnectionCutter, browser_cluster, register, wait_until_final
from tests.evidence import (
    STAMP_ALLOWANCE,
    assert_attempts_match_requests,
    assert_no_cedula_stored,
    assert_nothing_sent_while_open,
    consultas_by_member,
    final_events,
    summary,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.scale,
    pytest.mark.django_db(transaction=True),
]


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is missing: scripts/setup.sh installs Debian's faketime"
    return found[0]


def skewed(seconds: float) -> dict[str, str]:
    """Environment for a process whose wall clock is ``seconds`` off (its monotonic is not)."""
    return {
        "LD_PRELOAD": _libfaketime(),
        "FAKETIME": f"{seconds:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@pytest.fixture
def site() -> Iterator[CensusSimulator]:
    with CensusSimulator(retry_after=2, captcha="click") as simulator:
        yield simulator


_TURNS = """
import select, sys, time
import django
django.setup()
from census.gate.waiter import GateWaiter


def nap(seconds):  # time.sleep fails under libfaketime (EINVAL): select's timeout does not
    select.select([], [], [], max(seconds, 0.0))


limit, turns, start_at = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
gate = GateWaiter("skew", interval=limit)
print(repr(time.time()), flush=True)  # this process's wall clock, to show its skew
while time.monotonic() < start_at:  # the monotonic clock is the host's, not faked
    nap(0.01)
for _ in range(turns):
    slot = gate.wait_turn(sleep=nap)
    print(repr(time.monotonic()), flush=True)  # the send, on the host's one monotonic clock
    gate.sent(slot)
"""


def test_a_host_whose_clock_is_two_seconds_fast_sends_nothing_early() -> None:
    """Two processes share the gate on PostgreSQL, one with its clock 2 s fast (libfaketime):
    no two sends closer than the limit.

    Without the database's clock the fast process's slots were 2 s early on the other's
    (gaps of ~0 s at a 2 s limit). The processes take turns through the real gate and
    database but send nothing (under libfaketime Python's time.sleep fails with EINVAL and
    Playwright's driver stalls: every browser attempt under it crashed), so the sends are
    stamped on the host's
    monotonic clock, which both share, the moment the gate lets each go.
    """
    limit, turns = 2.0, 5
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CENSUS_TEST_DB": str(connection.settings_dict["NAME"]),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    start_at = time.monotonic() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TURNS, str(limit), str(turns), str(start_at)],
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in (skewed(2.0), {})
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    (fast_clock, *fast), (true_clock, *true) = (out.split() for out, _ in outputs)
    assert float(fast_clock) - float(true_clock) > 1.5, "libfaketime did not move the clock"
    assert len(fast) == len(true) == turns
    sends = sorted(float(t) for t in fast + true)
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert min(gaps) >= limit - STAMP_ALLOWANCE, sorted(gaps)[:3]
    print(f"\nFAULTS skew: sends={len(sends)} limit_s={limit} skew_s=2.0 min_gap_s={min(gaps):.3f}")


# -- the database drops its connections ------------------------------------------------------


#: (prefix, final status, requests the site must receive, how many members): 20 in all.
DROP_MIX = (
    ("10", Status.FOUND, 1, 12),
    ("20", Status.NOT_FOUND, 1, 3),
    ("710", Status.FOUND, 2, 3),  # the F5 block page once, then found
    ("40", Status.ERROR, 3, 2),  # the F5 block page every time: three attempts, three blocks
)


def test_connections_terminated_every_few_seconds_lose_no_answer(
    qcluster: Any, site: CensusSimulator
) -> None:
    """Every database connection cut every 3 s, 8 times, under 20 running lookups: every
    lookup right, no member asked again after the site answered it, attempts charged equal
    requests, nothing sent inside a block pause.

    Without the retries, a cut claim or report lost an answer the site gave (the member was
    asked again: 11 of 19 in the issue's run), a cut block record left the breaker closed,
    and a cut gate call inside the route handler neither sent nor aborted the request.
    """
    cluster = browser_cluster(qcluster, site, CENSUS_MAX_ATTEMPTS="3")
    expected = {
        factories.cedula(prefix): (status, requests)
        for prefix, status, requests, count in DROP_MIX
        for _ in range(count)
    }
    ids = register(list(expected))
    deadline = time.monotonic() + 120
    while not site.consultas() and time.monotonic() < deadline:
        time.sleep(0.2)
    cutter = ConnectionCutter(every=3.0, times=8).start()
    try:
        infos = wait_until_final(ids, cluster, timeout=900)
    finally:
        cutter.stop()
    assert len(cutter.cut) == 8 and sum(cutter.cut) >= 8, cutter.cut

    received = consultas_by_member(site)
    for info in infos:
        status, requests = expected[info.user.username]
        assert info.status == status, (info.pk, info.raw_response)
        key = cedula_key(info.user.username)
        # Asked exactly as often as the scenario needs: never again after an answer.
        assert received[key] == requests, (info.user.username[:3], received[key])
        charged = Attempt.objects.filter(lookup=info).exclude(outcome="deferred").count()
        assert charged == requests, (info.user.username[:3], charged, requests)
    assert_attempts_match_requests(site, infos)

    assert_nothing_sent_while_open(cluster, site, "no block opened the breaker")
    assert max(final_events(cluster).values()) == 1
    retried = [e for e in cluster.events() if e["event"] == "database_retry"]
    assert_no_cedula_stored(list(expected), cluster)
    summary(
        "drops",
        infos,
        site,
        cuts=len(cutter.cut),
        connections_cut=sum(cutter.cut),
        database_retries=len(retried),
        requests_per_member=round(len(site.consultas()) / len(infos), 3),
    )


# -- the database stops answering ------------------------------------------------------------


class StallingProxy:
    """A TCP proxy to PostgreSQL that can stop forwarding (a frozen server or a black-holed
    network: connections stay open, nothing answers) and start again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False

    def start(self) -> StallingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._flowing.wait()  # a new connection during the stall waits, as with a frozen host
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # what arrived during the stall is held, not lost
                target.sendall(data)
        except OSError:
            pass
        finally:
            for each in (source, target):
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)


def test_a_database_that_stops_answering_for_30_s_stalls_no_lookup(
    qcluster: Any, site: CensusSimulator
) -> None:
    """The cluster's database stops answering for 30 s mid-run (a proxy that holds every
    byte): every lookup ends found afterwards, each member asked once, and the gate's helper
    gave up on the frozen connection rather than waiting it out.

    Without the helper's caller-side timeout a gate call waited on the frozen socket for the
    whole stall, holding the Playwright thread and its browser past the scrape timeout.
    """
    settings = connection.settings_dict
    proxy = StallingProxy((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    proxy.start()
    user = settings["USER"] or "postgres"
    through_proxy = f"postgresql://{user}@127.0.0.1:{proxy.port}/postgres"
    try:
        cluster = browser_cluster(
            qcluster, site, CENSUS_TEST_POSTGRES=through_proxy, CENSUS_MAX_ATTEMPTS="5"
        )
        numbers = [factories.cedula("10") for _ in range(10)]
        ids = register(numbers)  # the test itself talks to the database directly
        deadline = time.monotonic() + 180
        while len(site.consultas()) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(site.consultas()) >= 3, "no lookup reached the site before the stall"
        proxy.stall()
        time.sleep(30)
        proxy.resume()
        infos = wait_until_final(ids, cluster, timeout=600)
    finally:
        proxy.close()
    assert {i.status for i in infos} == {Status.FOUND}, [i.raw_response for i in infos]
    assert set(consultas_by_member(site).values()) == {1}
    assert_attempts_match_requests(site, infos)
    assert max(final_events(cluster).values()) == 1
    stalled = [
        e
        for e in cluster.events()
        if e["event"] == "database_retry" and e.get("error") == "DatabaseStalled"
    ]
    assert stalled, "no gate call met the stall: the test proved nothing"
    summary("stall", infos, site, stall_s=30, helper_gave_up=len(stalled))
