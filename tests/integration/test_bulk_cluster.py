"""A backfill with census_lookup through a real qcluster, Chromium and the census simulator.

The command runs as its own process, is SIGKILLed mid-run and started again; members register
while it runs. The test counts what the queue held while it ran and what the site received.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Min

from census import bulk
from census.bulk import FINAL_VALUES
from census.management.commands.census_lookup import POLL_SECONDS
from census.models import Attempt, BulkMember, BulkRun, CedulaInfo, Status
from census.q2 import queue
from tests import factories
from tests.clusters import ROOT, browser_cluster, wait_until_final

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

#: 5 s of the gate at one request per 0.25 s: at most 20 lookups in flight by the gate's
#: measure. Two Chromium workers on two cores finish far fewer in 5 s, so the window is sized
#: by what they finish (``bulk.window_size``), and that is what a registration waits behind.
WINDOW = {"CENSUS_RATE_LIMIT_SECONDS": "0.25", "CENSUS_BULK_WINDOW_SECONDS": "5"}
CAPACITY = 20
WORKERS = 2
EXPECTED = {"10": Status.FOUND, "20": Status.NOT_FOUND, "30": Status.CANCELLED}


class Watch:
    """Samples the queue while the test waits: the most the run and the broker ever held."""

    def __init__(self, run_members: Callable[[], Any]) -> None:
        self.run_members = run_members
        self.max_run_in_flight = 0
        self.max_queue_depth = 0

    def sample(self) -> None:
        fed = self.run_members().exclude(fed_at=None)
        in_flight = fed.exclude(user__cedula_info__status__in=FINAL_VALUES)
        self.max_run_in_flight = max(self.max_run_in_flight, in_flight.count())
        self.max_queue_depth = max(self.max_queue_depth, len(queue.queued_packages() or []))

    def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sample()
            if done():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


def start_command(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "django", "census_lookup", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_backfill_is_paced_resumable_and_lets_registrations_first(
    qcluster: Any, census_site: Any, tmp_path: Path
) -> None:
    """40 members: never more than a window queued, a SIGKILLed run resumed, nothing twice,
    and the members who register mid-run wait behind what the workers finish in a window,
    not behind the 20 lookups the gate alone would allow (they did, before the window was
    sized by the cluster: 2 workers fed 20 at a time)."""
    user_model = get_user_model()
    numbers = [factories.cedula(p) for p in ["10"] * 30 + ["20"] * 6 + ["30"] * 4]
    # A portal's existing members: created without the census receiver (bulk_create).
    user_model.objects.bulk_create([user_model(username=n) for n in numbers])
    [leader] = user_model.objects.bulk_create(
        [user_model(username=factories.cedula("10"), role="leader")]
    )
    CedulaInfo.objects.create(user=leader, status=Status.FOUND)
    cluster = browser_cluster(qcluster, census_site, **WINDOW)
    env = {**cluster.env, **WINDOW, "CENSUS_JSON_LOG": str(tmp_path / "command.jsonl")}
    log = tmp_path / "command.out"
    args = ("--as", leader.username, "--missing")

    watch = Watch(lambda: BulkMember.objects.all())
    first = start_command(env, log, *args)
    fed = lambda: BulkMember.objects.exclude(fed_at=None).count()  # noqa: E731
    watch.until(lambda: fed() >= 10, 300, "10 members fed")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    fed_at_kill = fed()

    second = start_command(env, log, *args)
    watch.until(lambda: fed() >= 25, 300, "25 members fed")
    registered_at = time.time()
    newcomers = register_newcomers()
    watch.until(lambda: second.poll() is not None, 600, "the resumed run to finish")
    output = log.read_text()
    assert second.returncode == 0, output[-3000:]
    assert "resuming run" in output and "finished: 40 lookup(s) final" in output, output[-3000:]

    infos = wait_until_final(
        list(CedulaInfo.objects.filter(user__username__in=numbers).values_list("pk", flat=True))
        + newcomers,
        cluster,
        timeout=300,
    )
    by_user = {info.user.username: info for info in infos}
    for number in numbers:
        info = by_user[number]
        assert info.status == EXPECTED[number[:2]], (number[-3:], info.raw_response)
        # One lookup, one budget, one request: the kill repeated nothing. (A loaded machine
        # may add attempts that sent nothing: deferred for its own slowness, or timed out
        # before the submit; they are not the kill's.)
        assert info.budget_start == 1, (number[-3:], info.budget_start)
        assert info.attempts.filter(sent=True).count() == 1
        assert census_site.consulta_count(number) == 1
    assert 10 <= fed_at_kill < 40
    assert BulkRun.objects.count() == 1 and BulkRun.objects.get().finished_at is not None
    # Paced: never more of the run in flight than the window; the broker never deeper than
    # the window plus the two registrations.
    assert 0 < watch.max_run_in_flight <= CAPACITY
    assert watch.max_queue_depth <= CAPACITY + len(newcomers)

    # Registrations go first: queued ahead of every member the run fed after them.
    later = BulkMember.objects.filter(fed_at__gt=_as_datetime(registered_at))
    assert later.exists()
    first_later = Attempt.objects.filter(lookup__user__in=later.values("user")).aggregate(
        first=Min("started_at")
    )["first"]
    for pk in newcomers:
        started = Attempt.objects.get(lookup_id=pk, step=1).started_at
        assert started <= first_later
        assert run_lookups_ahead(numbers, registered_at, started) <= window_bound(registered_at)

    third = subprocess.run(
        [sys.executable, "-m", "django", "census_lookup", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert third.stdout.strip() == "nothing to do: no member matches the selection"


def register_newcomers() -> list[int]:
    """Two members register mid-backfill (their lookups queue on commit)."""
    users = [factories.member(username=factories.cedula("11")) for _ in range(2)]
    return [CedulaInfo.objects.get(user=user).pk for user in users]


def run_lookups_ahead(numbers: list[str], registered_at: float, started: datetime) -> int:
    """Lookups of the run that started after a member registered and before that member's
    own attempt: those that were queued ahead of it."""
    return Attempt.objects.filter(
        lookup__user__username__in=numbers,
        started_at__gt=_as_datetime(registered_at),
        started_at__lt=started,
    ).count()


def window_bound(registered_at: float) -> int:
    """The most a window could hold at the last feed before the registration: attempts the
    cluster finished in the lookback (widened by one period of the command's feeds), scaled
    to the window, plus one per worker (``bulk.window_size``)."""
    window = float(WINDOW["CENSUS_BULK_WINDOW_SECONDS"])
    lookback = max(window, bulk.THROUGHPUT_LOOKBACK_SECONDS)
    finished = (
        Attempt.objects.filter(
            finished_at__gt=_as_datetime(registered_at - lookback - POLL_SECONDS),
            finished_at__lte=_as_datetime(registered_at),
        )
        .exclude(outcome="deferred")
        .count()
    )
    return math.ceil(finished * window / lookback) + WORKERS


def _as_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
