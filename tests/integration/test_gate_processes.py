"""The database-backed gate shared by competing processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings as django_settings

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_share_the_gate() -> None:
    """Two processes racing for the same gate never get slots closer than the interval."""
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


_TURNS_SCRIPT = """
import sys, time
import django
django.setup()
from census.gate.waiter import GateWaiter
interval, turns, start_at = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
gate = GateWaiter("cross-process", interval=interval)
time.sleep(max(0.0, start_at - time.time()))
for _ in range(turns):
    # The moment the gate let the request go (on the database's clock), then the "send".
    slot = gate.wait_turn()
    print(repr(slot.at.timestamp()), flush=True)
    gate.sent(slot)
"""
