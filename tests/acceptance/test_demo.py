"""End to end: ``manage.py census_demo`` as a user runs it (simulator, qcluster, Chromium)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from portal.demo.mix import MIX

# The demo makes its own SQLite database (it drops the test's settings).
pytestmark = [pytest.mark.slow, pytest.mark.own_servers]

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 6


@dataclass(frozen=True, kw_only=True)
class DemoRun:
    result: subprocess.CompletedProcess[str]
    var_dir: Path
    #: Every process the demo started inherits it in its environment.
    marker: str


def _leftovers(marker: str) -> list[str]:
    """Processes still carrying the run's marker in their environment (zombies excluded)."""
    found = []
    for process in psutil.process_iter(["pid", "name", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("CENSUS_DEMO_TEST_MARKER") == marker:
                found.append(f"{process.info['pid']} {process.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _env(var_dir: Path, marker: str) -> dict[str, str]:
    """The caller's environment without census/portal/Django overrides, on ``var_dir``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CENSUS_", "PORTAL_", "DJANGO_"))
    }
    return {**env, "PORTAL_VAR_DIR": str(var_dir), "CENSUS_DEMO_TEST_MARKER": marker}


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, str]:
    """One demo run with a few members on a fresh database of its own."""
    var_dir = tmp_path_factory.mktemp("demo")
    marker = uuid.uuid4().hex
    result = subprocess.run(
        [sys.executable, "example/manage.py", "census_demo", "--members", str(MEMBERS), "--plain"],
        cwd=ROOT,
        env=_env(var_dir, marker),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return DemoRun(result=result, var_dir=var_dir, marker=marker)


def test_demo_exits_zero_with_a_summary(demo_run: DemoRun) -> None:
    """The demo ends on its own, exit 0, with a summary of every member and no late retry."""
    result, var_dir = demo_run.result, demo_run.var_dir
    output = result.stdout

    assert result.returncode == 0, output[-4000:] + result.stderr[-4000:]
    assert (
        f"Demo finished: {MEMBERS} members registered, {MEMBERS} lookups final, 0 unfinished"
        in output
    )
    assert f"every final lookup ended as its scenario expects ({MEMBERS}/{MEMBERS})" in output
    assert "late (> 2 s): 0." in output
    assert f"JSON log: {var_dir / 'census.log'}" in output
    assert f"for {MEMBERS}/{MEMBERS} lookups" in output
    assert "qinfo" in output and "qmonitor" in output and "/admin/" in output
    assert "CENSUS_RATE_LIMIT_SECONDS=1 (production default 5)" in output
    # The live site's captcha, solved by the local service: one paid solve per request; the
    # site uses each token but those of requests its front layer blocked (the 429).
    requests = re.search(r"Census requests seen by the simulator: (\d+)", output)
    solves = re.search(r"Captcha solves paid: (\d+) .* tokens used by the site: (\d+)", output)
    assert requests and solves, output[-3000:]
    assert int(solves[1]) == int(requests[1]) > MEMBERS
    assert int(solves[2]) == int(solves[1]) - 1
    # The example settings run portal.followups.notify_leader for found, cancelled and
    # error: 5 of the first 6 cases (not the not-found one). No demo member has a leader.
    assert (
        "Follow-ups (CENSUS_FOLLOW_UPS): 5 planned, 5 succeeded, 0 failed; "
        "0 leader notices written." in output
    )


def test_demo_leaves_every_lookup_in_its_expected_state(demo_run: DemoRun) -> None:
    """In the database, each member's lookup ended as its simulator scenario says."""
    with sqlite3.connect(demo_run.var_dir / "portal.sqlite3") as db:
        rows = db.execute(
            "SELECT m.username, c.status, c.retry_count FROM census_cedulainfo c "
            "JOIN portal_member m ON m.id = c.user_id ORDER BY m.id"
        ).fetchall()

    assert len(rows) == MEMBERS
    for (cedula, status, _), case in zip(rows, MIX[:MEMBERS], strict=True):
        assert cedula.startswith(case.prefix)
        assert status == case.expected.value, (case.label, status)
    exhausted = [retries for (_, status, retries) in rows if status == "error"]
    assert exhausted == [2]  # the captcha case used all three attempts: two retries


def test_demo_json_log_has_a_line_per_status_change(demo_run: DemoRun) -> None:
    """Per lookup: its creation plus two transitions per attempt, and Django-Q2's lines too."""
    with sqlite3.connect(demo_run.var_dir / "portal.sqlite3") as db:
        attempts = dict(
            db.execute("SELECT lookup_id, COUNT(*) FROM census_attempt GROUP BY lookup_id")
        )
    events = [json.loads(line) for line in (demo_run.var_dir / "census.log").open()]
    changes = Counter(e["lookup_id"] for e in events if e["event"] == "lookup_status_changed")

    assert changes == {lookup: 1 + 2 * count for lookup, count in attempts.items()}
    assert any(e["logger"] == "django-q" for e in events)


def test_demo_leaves_no_process_behind(demo_run: DemoRun) -> None:
    """No qcluster, worker, Playwright driver or Chromium survives the demo."""
    assert _leftovers(demo_run.marker) == []


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C mid-run: the demo stops its cluster and browsers, summarises, exits 130."""
    marker = uuid.uuid4().hex
    output = tmp_path / "demo.out"
    with output.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "example/manage.py", "census_demo", "--members", "4", "--plain"],
            cwd=ROOT,
            env=_env(tmp_path, marker),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while "scraping" not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(demo.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        returncode = demo.wait(timeout=60)

    assert returncode == 130, output.read_text()[-3000:]
    assert "Demo interrupted" in output.read_text()
    assert _leftovers(marker) == []


def test_demo_fails_when_the_deadline_passes(tmp_path: Path) -> None:
    """Lookups left unfinished at the deadline make the demo exit 1 and say so."""
    marker = uuid.uuid4().hex
    result = subprocess.run(
        [sys.executable, "example/manage.py", "census_demo", "--members", "3", "--plain"]
        + ["--deadline", "1"],
        cwd=ROOT,
        env=_env(tmp_path, marker),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stdout[-3000:]
    assert "Deadline of 1 s reached." in result.stdout
    assert "member(s) not registered" in result.stderr
    assert _leftovers(marker) == []
