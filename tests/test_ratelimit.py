"""The cluster-wide rate gate: slot arithmetic, the shared row, and real competing processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from census.models import RateGate as RateGateRow
from census.ratelimit import SEND_MARGIN, RateGate, next_slot, pushed_back

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


@pytest.mark.parametrize(
    ("next_allowed_at", "now", "interval", "slot", "after"),
    [
        # An idle gate: go now; the next caller waits a full interval (plus the margin).
        (T0 - seconds(30), T0, 5.0, T0, T0 + seconds(5 + SEND_MARGIN)),
        (T0, T0, 5.0, T0, T0 + seconds(5 + SEND_MARGIN)),
        # A busy gate: take the reserved time, push the next one further.
        (T0 + seconds(3), T0, 5.0, T0 + seconds(3), T0 + seconds(8 + SEND_MARGIN)),
        # No limit: no spacing, but a pushed-back time is still honoured.
        (T0 - seconds(1), T0, 0.0, T0, T0),
        (T0 + seconds(10), T0, 0.0, T0 + seconds(10), T0 + seconds(10)),
    ],
)
def test_next_slot(
    next_allowed_at: datetime, now: datetime, interval: float, slot: datetime, after: datetime
) -> None:
    reservation = next_slot(next_allowed_at, now, interval)
    assert reservation.slot == slot
    assert reservation.next_allowed_at == after


def test_consecutive_slots_are_spaced_by_the_interval() -> None:
    row, now, slots = T0, T0, []
    for _ in range(5):
        reservation = next_slot(row, now, 2.0)
        slots.append(reservation.slot)
        row = reservation.next_allowed_at
        now += seconds(0.1)  # callers arrive faster than the limit
    gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
    assert all(gap >= 2.0 for gap in gaps)


@pytest.mark.parametrize(
    ("next_allowed_at", "wait", "expected"),
    [
        (T0, 10.0, T0 + seconds(10)),
        (T0 + seconds(30), 10.0, T0 + seconds(30)),  # never earlier than already set
        (T0 - seconds(5), -3.0, T0),
    ],
)
def test_pushed_back(next_allowed_at: datetime, wait: float, expected: datetime) -> None:
    assert pushed_back(next_allowed_at, T0, wait) == expected


@pytest.mark.django_db(transaction=True)
def test_first_use_creates_the_row_and_goes_at_once() -> None:
    gate = RateGate("first", interval=5.0)
    started = time.monotonic()
    assert gate.wait_turn() == 0.0
    assert time.monotonic() - started < 1.0
    row = RateGateRow.objects.get(name="first")
    assert row.next_allowed_at > datetime.now(UTC) + seconds(4)


@pytest.mark.django_db(transaction=True)
def test_turns_in_one_process_are_spaced() -> None:
    gate = RateGate("spaced", interval=0.3)
    times = []
    for _ in range(4):
        gate.wait_turn()
        times.append(time.time())
    assert all(b - a >= 0.3 for a, b in zip(times, times[1:], strict=False))


@pytest.mark.django_db(transaction=True)
@override_settings(CENSUS_RATE_LIMIT_SECONDS=0.4)
def test_interval_comes_from_settings_at_call_time() -> None:
    gate = RateGate("settings")
    assert gate.interval == 0.4
    with override_settings(CENSUS_RATE_LIMIT_SECONDS=2.5):
        assert gate.interval == 2.5


@pytest.mark.django_db(transaction=True)
def test_a_slot_past_the_deadline_is_refused_and_not_taken() -> None:
    gate = RateGate("deadline", interval=10.0)
    gate.wait_turn()
    before = gate.next_allowed_at()
    deadline = datetime.now(UTC) + seconds(2)
    assert gate.wait_turn(deadline=deadline) is None
    assert gate.next_allowed_at() == before


@pytest.mark.django_db(transaction=True)
def test_push_back_delays_the_next_turn() -> None:
    gate = RateGate("pushed", interval=0.1)
    gate.wait_turn()
    gate.push_back(1.0)
    started = time.monotonic()
    waited = gate.wait_turn()
    assert waited is not None and waited > 0.8
    assert time.monotonic() - started >= 0.9


@pytest.mark.django_db(transaction=True)
def test_usable_where_an_asyncio_loop_runs() -> None:
    """The Playwright thread runs a loop: inline ORM calls there raise SynchronousOnlyOperation."""

    async def inside_loop() -> float | None:
        return RateGate("loop", interval=0.1).wait_turn()

    assert asyncio.run(inside_loop()) == 0.0
    assert RateGateRow.objects.filter(name="loop").exists()


_TURNS_SCRIPT = """
import sys, time
import django
django.setup()
from census.ratelimit import RateGate
interval, turns, start_at = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
gate = RateGate("cross-process", interval=interval)
time.sleep(max(0.0, start_at - time.time()))
for _ in range(turns):
    gate.wait_turn()
    print(repr(time.time()), flush=True)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_share_the_gate() -> None:
    interval, turns = 0.5, 4
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CENSUS_TEST_DB": str(django_settings.DATABASES["default"]["NAME"]),
        # The same import path as this test run (pytest adds the example project).
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    # Both start at the same moment, with no row yet: the first use races too.
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TURNS_SCRIPT, str(interval), str(turns), str(start_at)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    times = sorted(float(line) for out, _ in outputs for line in out.split())
    assert len(times) == 2 * turns
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= interval, gaps
    # Spaced, not serialised per process: the whole run takes about turns * 2 intervals.
    assert times[-1] - times[0] < (2 * turns - 1) * (interval + SEND_MARGIN) + 1.0
