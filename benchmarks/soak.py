"""7 (and 6's memory figure). Does a worker leak over many Chromium lookups?

One qcluster with one worker looks members up in real Chromium against the simulator, no
rate limit: up to ``lookups`` of them, fed two ahead of the worker, until ``seconds`` have
passed (a time box: on a slow machine the soak does fewer lookups and says so). Ten times a
second the worker is sampled: its own RSS, its process tree's RSS and PSS (worker +
Playwright's driver + Chromium), and the lookup its title names.

- ``soak_rss_growth_pct``: the worker's own RSS (per lookup, its lowest sample: the Python
  process between Chromium launches), median over the last twentieth of the lookups against
  the twentieth that ends the first fifth (warm-up done);
- ``soak_leftover_processes``: processes of this measurement other than the cluster's own,
  once the lookups are done and again once the cluster stopped (zombies excluded: they hold
  no memory; an init reaps them, see docs/scraper.md);
- ``worker_tree_rss_mb``: a busy worker's tree, median over lookups of each one's peak RSS
  sum (pages shared between Chromium's processes count once per process; the PSS sum, in
  ``info``, counts them once).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import statistics
import time
from typing import Any

import psutil

from benchmarks.harness import (
    MARKER,
    Clusters,
    cedula,
    marked_processes,
    register,
    tree_memory_mb,
    worker_processes,
)
from benchmarks.rate import browser_env
from census.models import FINAL_STATUSES, CedulaInfo, Status
from census.testing.simulator import CensusSimulator

_TASK = re.compile(r"processing census-lookup-(\d+)-step-\d+")
#: Lookups queued ahead of the worker, so that it never waits for work.
AHEAD = 2


def _strays(cluster_pids: set[int]) -> dict[int, str]:
    """Processes carrying this measurement's marker, but for this one and the cluster's own."""
    found = {}
    for process in marked_processes(os.environ[MARKER]):
        if process.pid not in cluster_pids:
            with contextlib.suppress(psutil.Error):
                found[process.pid] = " ".join(process.cmdline())[:120]
    return found


def _sample(cluster: Any, own: dict[int, list[float]], tree: dict[int, list[Any]]) -> None:
    for worker in worker_processes(cluster):
        with contextlib.suppress(psutil.Error):
            match = _TASK.search(" ".join(worker.cmdline()))
            if match:
                lookup = int(match.group(1))
                own.setdefault(lookup, []).append(worker.memory_info().rss / 2**20)
                tree.setdefault(lookup, []).append(tree_memory_mb(worker))


def _soak(cluster: Any, target: int, seconds: float, own: Any, tree: Any) -> list[int]:
    """Feed lookups until ``target`` or the time box; returns the ids, all final."""
    ids: list[int] = []
    stop_feeding = time.monotonic() + seconds
    deadline = stop_feeding + 120
    checked = 0.0
    while True:
        _sample(cluster, own, tree)
        if time.monotonic() - checked > 0.3:
            checked = time.monotonic()
            final = CedulaInfo.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count()
            if len(ids) < target and checked < stop_feeding:
                ids += register([cedula("10") for _ in range(final + AHEAD - len(ids))])
            elif final == len(ids):
                return ids
            if checked > deadline:
                raise RuntimeError(f"{final}/{len(ids)} final: {cluster.output()[-2000:]}")
        time.sleep(0.1)


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    own: dict[int, list[float]] = {}  # lookup id -> samples, in the order first seen
    tree: dict[int, list[Any]] = {}  # lookup id -> (RSS, PSS) samples
    with CensusSimulator(captcha="click") as site:
        cluster = clusters.start(workers=1, **browser_env(site, 0))
        clusters.wait_ready()
        started = time.monotonic()
        ids = _soak(cluster, params["lookups"], params["seconds"], own, tree)
        elapsed = time.monotonic() - started
        found = CedulaInfo.objects.filter(pk__in=ids, status=Status.FOUND).count()

        time.sleep(3)  # the last lookup's browser has had time to go
        workers = worker_processes(cluster)
        idle_rss = workers[0].memory_info().rss / 2**20 if workers else None
        # The cluster's own processes: itself and its descendants but the worker's.
        cluster_pids = {cluster.process.pid}
        with contextlib.suppress(psutil.Error):
            cluster_pids |= {p.pid for p in psutil.Process(cluster.process.pid).children(True)}
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                cluster_pids -= {p.pid for p in worker.children(recursive=True)}
        left = _strays(cluster_pids)
        clusters.stop()
        time.sleep(3)
        left |= _strays(set())
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the cluster, Chromium included

    order = [lookup for lookup in own if lookup in ids]
    lows = [min(own[lookup]) for lookup in order]
    fifth, window = max(1, len(lows) // 5), max(1, len(lows) // 20)
    base = statistics.median(lows[max(0, fifth - window) : fifth])
    end = statistics.median(lows[-window:])
    peaks = [max(rss for rss, _ in tree[lookup]) for lookup in order]
    pss_peaks = [max(pss for _, pss in tree[lookup]) for lookup in order]
    return {
        "soak_rss_growth_pct": (end - base) / base * 100,
        "soak_leftover_processes": len(left),
        "worker_tree_rss_mb": statistics.median(peaks),
        "info": {
            "lookups": len(ids),
            "lookups_wanted": params["lookups"],
            "time_box_s": params["seconds"],
            "found": found,
            "lookups_sampled": len(order),
            "seconds_per_lookup": round(elapsed / len(ids), 2),
            "cpu_s_per_lookup": round((cpu.ru_utime + cpu.ru_stime) / len(ids), 2),
            "worker_rss_first_fifth_mb": round(base, 1),
            "worker_rss_end_mb": round(end, 1),
            "worker_rss_idle_after_mb": round(idle_rss, 1) if idle_rss else None,
            "worker_tree_rss_max_mb": round(max(peaks), 1),
            "worker_tree_pss_mb": round(statistics.median(pss_peaks), 1),
            "leftovers": list(left.values()),
        },
    }
