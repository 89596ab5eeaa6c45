"""./bench still runs: every measurement at tiny sizes, every key and goal in its JSON.

No figure is judged here (a smoke run's sizes say nothing about speed); BENCHMARKS.md has the
full run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import GOALS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    # ./bench picks its own databases (SQLite, and PostgreSQL + Redis when ./test found them):
    # both passes of ./test would run the very same thing, so only one runs it: the
    # PostgreSQL pass, the shorter of the two without its 2.5 minutes.
    pytest.mark.own_servers(pass_="postgres"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_every_key_and_goal(tmp_path: Path) -> None:
    """A tiny ./bench run ends 0 and writes every key, its goal and the machine block."""
    out = tmp_path / "bench.json"
    # The same interpreter and servers (if ./test found some) as this test run.
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads(out.read_text())
    for key in GOALS:
        for name in (key, f"{key}_goal"):
            assert isinstance(figures[name], int | float), (name, figures[name])
    machine = figures["machine"]
    for name in ("cores", "memory_mb", "python", "chromium", "database"):
        assert machine[name], name
    assert figures["info"]["runner_killed_leftovers"] == 0
