"""The benchmark runner behind ``./bench``: every measurement, one table, one JSON file.

    ./bench [--quick | --smoke] [--json PATH] [--only NAME,...] [--sqlite]

Each measurement runs in a child process of its own on a fresh database (``child.py``);
stages run one after the other, the jobs of a stage side by side. The runner adds each
key's goal (``<key>_goal``) and a ``machine`` block, prints the table, and removes anything
a child left running (every process it starts carries the run's marker).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from benchmarks.harness import MARKER, ROOT, marked_processes

#: key -> (comparison, goal, anchor). "info" rows are informational: a goal, never a verdict.
GOALS: dict[str, tuple[str, float, str]] = {
    "registration_overhead_ratio": ("<=", 1.3, "ORM registration, receiver disconnected"),
    "registration_view_overhead_ratio": ("<=", 1.3, "portal view, receiver disconnected"),
    "orchestration_throughput_ratio": (">=", 0.5, "no-op async_task + hook, same cluster"),
    "retry_queue_lateness_p95_s": ("<=", 1.0, "due time (queued - due_at)"),
    "retry_start_lateness_p95_s": ("<=", 1.5, "due time (started - due_at)"),
    "stock_retry_start_lateness_p95_s": ("info", 30.0, "Django-Q2 alone: a 30 s scheduler"),
    "gate_utilisation": (">=", 0.95, "the gate alone at 1 request/s, no browser"),
    "gate_violations": ("==", 0, "sends closer than 1 s"),
    "gate_makespan_ratio": ("<=", 1.15, "sends x limit"),
    "gate_utilisation_fast": (">=", 0.95, "the gate alone at 5 requests/s"),
    "gate_violations_fast": ("==", 0, "sends closer than 0.2 s"),
    "gate_makespan_ratio_fast": ("<=", 1.15, "sends x limit"),
    "rate_utilisation": (">=", 0.95, "the limit: 1 request/s"),
    "rate_violations": ("==", 0, "pairs closer than the limit"),
    "burst_makespan_ratio": ("<=", 1.15, "lookups x limit"),
    "cores_lookups_failed": ("==", 0, "4 workers, 2 cores, 8 s timeout: lookups not found"),
    "cores_charged_unsent": ("==", 0, "the same: attempts charged that sent nothing"),
    "browser_warm_vs_launch_ratio": ("info", 2.0, "launch per lookup / warm browser"),
    "worker_tree_rss_mb": ("info", 1024, "busy worker + driver + Chromium"),
    "soak_rss_growth_pct": ("<", 20.0, "worker RSS after the first fifth"),
    "soak_leftover_processes": ("==", 0, "no Chromium/driver after the lookups"),
    "captcha_pool_rate_utilisation": (">=", 0.95, "the limit, 5 s; 30 s solves asked ahead"),
    "captcha_pool_paid_per_consulta": ("<=", 1.02, "consultas the site received"),
    "captcha_pool_expired": ("==", 0, "tokens refused as expired, or paid and thrown away"),
    "captcha_in_attempt_rate_utilisation": ("info", 0.29, "solved inside: 2 x 5 s / ~35 s"),
    "captcha_in_attempt_paid_per_consulta": ("info", 1.0, "the same, solved inside"),
    "captcha_in_attempt_expired": ("info", 0, "the same, solved inside"),
    "captcha_pool_vs_in_attempt_utilisation_ratio": ("info", 3.3, "pool / solved inside"),
    "flood_alone_member_p50_s": ("info", 5.0, "members alone: registration to final"),
    "flood_alone_member_max_s": ("info", 7.0, "the same, the slowest member"),
    "flood_verified_member_p50_s": ("info", 50.0, "behind a flood of verified sign-ups"),
    "flood_verified_member_max_s": ("info", 50.0, "the same, the slowest member"),
    "flood_unverified_member_p50_s": ("info", 6.0, "behind a flood of unverified sign-ups"),
    "flood_unverified_member_max_s": ("info", 8.0, "the same, the slowest member"),
    "flood_verified_vs_alone_ratio": ("info", 10.0, "members' median, flood verified / alone"),
    "flood_unverified_vs_alone_ratio": ("<=", 1.5, "members' median, flood unverified / alone"),
    "flood_unverified_ahead": ("<=", 2, "flood consultas before the members' (2 workers)"),
}


@dataclass(frozen=True)
class Job:
    name: str
    module: str
    params: dict[str, Any]
    timeout: float
    #: Runs on PostgreSQL + Redis when the runner has them (else on SQLite).
    servers: bool = False
    #: Its figures go to ``info`` only (a second look at a key, e.g. on the other database).
    info_only: bool = False
    #: More environment for the child and its qclusters.
    env: tuple[tuple[str, str], ...] = ()


#: A stage is lanes run side by side; a lane is jobs run one after the other.
Stage = list[list[Job]]


#: Each job's parameters in a smoke, a quick and a full run.
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "registration": (
        {"rounds": 2, "batch": 3},
        {"rounds": 6, "batch": 20},
        {"rounds": 10, "batch": 50},
    ),
    "orchestration": (
        {"rounds": 1, "batch": 4},
        {"rounds": 3, "batch": 40},
        {"rounds": 5, "batch": 100},
    ),
    "retries": (
        {"members": 3, "spacing": 0.5},
        {"members": 50, "spacing": 0.5},
        {"members": 50, "spacing": 1.0},
    ),
    # Django-Q2's own scheduler: retries spread over one or two of its 30 s cycles.
    "stock": (
        {"members": 2, "spacing": 1.0, "stock": True},
        {"members": 8, "spacing": 4.0, "stock": True},
        {"members": 16, "spacing": 4.0, "stock": True},
    ),
    "rate": (
        {"lookups": 4, "limit": 1.0},
        {"lookups": 40, "limit": 1.0},
        {"lookups": 40, "limit": 1.0},
    ),
    # More browsers wanted than the cores drive: 4 workers, an 8 s scrape timeout.
    "cores": (
        {"lookups": 4, "limit": 1.0, "scrape_timeout": 8},
        {"lookups": 16, "limit": 1.0, "scrape_timeout": 8},
        {"lookups": 28, "limit": 1.0, "scrape_timeout": 8},
    ),
    "browser": ({"lookups": 1}, {"lookups": 4}, {"lookups": 12}),
    # The gate alone, at 1 s and 0.2 s: workers x turns sends each.
    "binds": (
        {"workers": 2, "turns": 2},
        {"workers": 8, "turns": 4},
        {"workers": 8, "turns": 8},
    ),
    # The gate's row vs a Redis gate (full runs with PostgreSQL + Redis only).
    "gate": (
        {"threads": 2, "calls": 5, "rounds": 1},
        {"threads": 4, "calls": 50, "rounds": 2},
        {"threads": 4, "calls": 100, "rounds": 4},
    ),
    # The same burst with the captcha solved ahead (lookups) and inside each attempt
    # (in_attempt_lookups); the smoke run's solves take 2 s and its limit is 1 s.
    "captcha": (
        {"lookups": 2, "in_attempt_lookups": 2, "limit": 1.0, "solve_seconds": 2.0},
        {"lookups": 10, "in_attempt_lookups": 4, "limit": 5.0, "solve_seconds": 30.0},
        {"lookups": 20, "in_attempt_lookups": 8, "limit": 5.0, "solve_seconds": 30.0},
    ),
    # Members registering behind a flood of sign-ups (verified, then unverified), and alone.
    "flood": (
        {"flood": 3, "members": 1, "limit": 1.0},
        {"flood": 16, "members": 3, "limit": 1.0},
        {"flood": 40, "members": 5, "limit": 1.0},
    ),
    # Up to that many lookups, fed until the time box (seconds) closes.
    "soak": (
        {"lookups": 4, "seconds": 120},
        {"lookups": 100, "seconds": 220},
        {"lookups": 300, "seconds": 720},
    ),
}


def plan(mode: str, servers: bool) -> list[Stage]:
    """The measurements in stages, sized for a smoke, quick or full run.

    The rate gate's measurements need all the CPU (4 Chromium lookups at a time), so they run
    alone first, and the captcha measurement after them (its utilisation is the gate's, with
    the solves' waits: a starved browser would show in it). Then the soak (Chromium lookups
    through one worker, judged on memory and leftovers only) runs beside the fake-scraper
    measurements, which compare alternating batches side by side, and the stock scheduler's,
    which only waits for its clock. The full run adds variants for comparison (their figures
    go to ``info``): persistent connections, PostgreSQL + Redis, the gate at a slower limit,
    and the gate's row against a Redis gate.
    """
    n = ("smoke", "quick", "full").index(mode)
    limit = (300, 300, 900)[n]

    def job(name: str, module: str = "", **options: Any) -> Job:
        """A job named after its module, or a variant (``name_variant``): figures to info."""
        params = {**SIZES[name.split("_")[0]][n], **options.pop("params", {})}
        options.setdefault("info_only", "_" in name)
        return Job(name, module or name, params, options.pop("timeout", limit), **options)

    rate = [job("binds", "gate_binds", servers=True), job("rate", servers=True)]
    rate.append(job("cores", servers=True))
    if mode == "full":  # the gate where the cores can keep up with the limit
        rate.append(job("cores_unlimited", "cores", servers=True, params={"browsers": 0}))
        slower = {"lookups": 16, "limit": 3.0}
        rate.append(job("rate_slower", "rate", servers=True, params=slower))
        if servers:  # where the gate could live: its row or Redis (figures to info)
            rate.append(job("gate_backends", servers=True))
    rate.append(job("captcha", timeout=(300, 600, 900)[n]))
    rate.append(job("flood", timeout=(300, 600, 900)[n]))
    beside_soak = [job("registration"), job("orchestration"), job("retries")]
    if mode == "full":  # the same with persistent connections, and on PostgreSQL + Redis
        persistent = (("CENSUS_BENCH_CONN_MAX_AGE", "600"),)
        beside_soak.append(job("registration_persistent", "registration", env=persistent))
        if servers:
            beside_soak.append(job("registration_scale", "registration", servers=True))
            beside_soak.append(job("orchestration_scale", "orchestration", servers=True))
    beside_soak += [job("browser", "bench_browser"), job("stock", "retries")]
    soak = job("soak", timeout=SIZES["soak"][n]["seconds"] + 300)
    return [[rate], [[soak], beside_soak]]


# -- running the children -------------------------------------------------------------------


def servers_from_env() -> dict[str, str] | None:
    """PostgreSQL and Redis as scripts/servers.sh exports them, or None to stay on SQLite."""
    postgres = os.environ.get("CENSUS_TEST_POSTGRES")
    redis_url = os.environ.get("CENSUS_TEST_REDIS")
    if not postgres or not redis_url:
        return None
    # A Redis database of our own: the test suite flushes its own (5) between tests.
    parts = urlsplit(redis_url)
    db = os.environ.get("CENSUS_BENCH_REDIS_DB", "7")
    return {"postgres": postgres, "redis": urlunsplit(parts._replace(path=f"/{db}"))}


class Runner:
    """Starts the children, enforces their time limits, collects their figures."""

    def __init__(self, root: Path, servers: dict[str, str] | None) -> None:
        self.root = root
        self.servers = servers
        self.run_id = uuid.uuid4().hex[:12]
        self.results: dict[str, Any] = {"info": {}}
        self.failures: list[str] = []
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def _env(self, job: Job, work: Path) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("CENSUS_", "DJANGO_", "PORTAL_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="benchmarks.settings",
            PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'example'}",
            CENSUS_VAR_DIR=str(work),
            CENSUS_JSON_LOG=str(work / "events-main.jsonl"),
            **{MARKER: f"{self.run_id}/{job.name}/"},
        )
        if job.servers and self.servers:
            name = f"census_bench_{os.getpid()}_{job.name}"
            env.update(
                CENSUS_TEST_DATABASE="postgres",
                CENSUS_TEST_BROKER="redis",
                CENSUS_TEST_POSTGRES=self.servers["postgres"],
                CENSUS_TEST_REDIS=self.servers["redis"],
                CENSUS_TEST_DB=name,
                CENSUS_TEST_QUEUE=name,
                CENSUS_TEST_REDIS_PREFIX=name,
            )
        else:
            env["CENSUS_TEST_DB"] = str(work / "db.sqlite3")
        return {**env, **dict(job.env)}

    def start(self, job: Job) -> None:
        work = self.root / job.name
        work.mkdir()
        params = {**job.params, "servers": bool(job.servers and self.servers)}
        with open(work / "child.log", "wb") as output:
            self.running[job.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.child",
                    job.module,
                    json.dumps(params),
                    str(work / "result.json"),
                ],
                cwd=ROOT,
                env=self._env(job, work),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        print(f"  {job.name}: started", flush=True)

    def stop(self, name: str) -> None:
        """SIGTERM (the child stops its clusters and drops its database), then SIGKILL."""
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=40)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def collect(self, job: Job) -> None:
        self.stop(job.name)
        work = self.root / job.name
        result_file = work / "result.json"
        if not result_file.exists():
            log = (work / "child.log").read_text(errors="replace")[-4000:]
            self.failures.append(job.name)
            print(f"  {job.name}: FAILED\n{log}", flush=True)
            return
        result = json.loads(result_file.read_text())
        info = result.pop("info", {})
        if job.info_only:
            info = {**result, **info}
        else:
            for key, value in result.items():
                self.results[key] = round(value, 4) if isinstance(value, float) else value
        self.results["info"][job.name] = info
        print(f"  {job.name}: done in {info.get('elapsed_s', '?')} s", flush=True)

    def run_stage(self, stage: Stage) -> None:
        lanes = [list(lane) for lane in stage]
        current: list[tuple[Job, float] | None] = [None] * len(lanes)
        while any(lanes) or any(current):
            for i, lane in enumerate(lanes):
                slot = current[i]
                if slot is not None:
                    job, deadline = slot
                    if self.running[job.name].poll() is None and time.monotonic() < deadline:
                        continue
                    if self.running[job.name].poll() is None:
                        print(f"  {job.name}: over its {job.timeout:.0f} s, stopping it")
                    self.collect(job)
                    current[i] = None
                if lane:
                    job = lane.pop(0)
                    self.start(job)
                    current[i] = (job, time.monotonic() + job.timeout)
            time.sleep(0.2)

    def run(self, stages: list[Stage]) -> None:
        try:
            for stage in stages:
                self.run_stage(stage)
        finally:
            for name in list(self.running):  # Ctrl-C or an error: stop what runs
                self.stop(name)
            left = list(marked_processes(f"{self.run_id}/"))
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            self.results["info"]["runner_killed_leftovers"] = len(left)


# -- the machine ----------------------------------------------------------------------------


def _chromium_version() -> str:
    executable = os.environ.get("CENSUS_BROWSER_EXECUTABLE") or "/usr/bin/chromium"
    try:
        return subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def machine(mode: str, servers: dict[str, str] | None) -> dict[str, Any]:
    """The ``machine`` block: what the figures were measured on."""
    database = f"SQLite {sqlite3.sqlite_version} with the ORM broker"
    rate_on = database + ": one qcluster of 4 workers"
    if servers:
        import psycopg
        import redis

        with psycopg.connect(servers["postgres"]) as conn:
            version = conn.info.server_version
        redis_version = redis.Redis.from_url(servers["redis"]).info()["redis_version"]
        rate_on = (
            f"PostgreSQL {version // 10000}.{version % 10000} with the Redis {redis_version} "
            "broker: two qclusters of 2 workers"
        )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "commit": _commit(),
        "cores": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "chromium": _chromium_version(),
        "database": database,
        "database_for_rate_and_burst": rate_on,
    }


# -- output ---------------------------------------------------------------------------------


def verdict(key: str, value: Any) -> str:
    comparison, goal, _ = GOALS[key]
    if not isinstance(value, (int, float)):
        return "MISSING"
    if comparison == "info":
        return "info"
    met = {"<=": value <= goal, ">=": value >= goal, "<": value < goal, "==": value == goal}[
        comparison
    ]
    return "met" if met else "MISSED"


def table(results: dict[str, Any]) -> str:
    rows = [("key", "value", "goal", "", "anchor")]
    for key, (comparison, goal, anchor) in GOALS.items():
        value = results.get(key)
        shown = (
            "-"
            if value is None
            else f"{value:.0f}"
            if isinstance(value, float) and abs(value) >= 100
            else f"{value:.3g}"
            if isinstance(value, float)
            else str(value)
        )
        rows.append(
            (
                key,
                shown,
                f"{'' if comparison == 'info' else comparison} {goal:g}".strip(),
                verdict(key, value),
                anchor,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure the census pipeline against its anchors.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes: about 6 minutes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: does it all still run?")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--sqlite", action="store_true", help="no PostgreSQL/Redis, even if set")
    parser.add_argument(
        "--only",
        help="comma-separated job names ("
        + ", ".join(job.name for stage in plan("full", True) for lane in stage for job in lane)
        + ")",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    servers = None if args.sqlite else servers_from_env()

    stages = plan(mode, servers is not None)
    if args.only:
        wanted = set(args.only.split(","))
        stages = [
            [[job for job in lane if job.name in wanted] for lane in stage] for stage in stages
        ]
    info = machine(mode, servers)
    print(
        f"census benchmarks, {mode} run: {info['cores']} cores, {info['chromium']}, "
        f"{info['database']}; rate and burst on {info['database_for_rate_and_burst']}"
    )
    root = Path(tempfile.mkdtemp(prefix="census-bench-"))
    runner = Runner(root, servers)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        runner.run(stages)
    finally:
        if args.keep:
            print(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    results = runner.results
    results["info"]["total_s"] = round(time.monotonic() - started, 1)

    output: dict[str, Any] = {}
    for key, (_, goal, _) in GOALS.items():
        output[key] = results.get(key)
        output[f"{key}_goal"] = goal
    output["machine"] = info
    output["info"] = results["info"]
    print()
    print(table(results))
    for name, info in results["info"].items():  # the variants, for comparison
        if isinstance(info, dict) and (shown := [k for k in info if k in GOALS]):
            print(f"  ({name}: {', '.join(f'{k} {info[k]:.3g}' for k in shown)})")
    print(f"\n{mode} run: {results['info']['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(output, indent=2) + "\n")
        print(f"wrote {args.json}")
    if runner.failures:
        print(f"failed: {', '.join(runner.failures)}", file=sys.stderr)
        sys.exit(1)
