"""2. What the pipeline costs around the scrape: lookups vs bare Django-Q2 tasks, one cluster.

One real qcluster (2 workers) with the instant fake scraper and no rate limit runs, in
alternating batches: census lookups (``census.lookup.start.start_lookup`` for existing members, i.e.
what the registration receiver does: the lookup row, then ``async_task`` with census's hook)
until every lookup is final, and no-op ``async_task`` calls with a no-op hook until every
hook ran. Throughput of a batch: its size / (last completion - first enqueue). Ratio of the
median throughputs.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.db.models.signals import post_save

from benchmarks.harness import Clusters, cedula, wait_final
from census.lookup import start

#: The no-op hook appends "<task id> <time>" here (set in the cluster's environment).
NOOP_LOG = "CENSUS_BENCH_NOOP_LOG"


def noop() -> None:
    """The bare task."""


def noop_hook(task: Any) -> None:
    """The bare hook: notes when it ran (a line in a file, no database work)."""
    with open(os.environ[NOOP_LOG], "a") as log:
        log.write(f"{task.id} {time.time()}\n")


def _members(count: int) -> list[Any]:
    """Members without a lookup yet (the receiver is off while they are created)."""
    post_save.disconnect(sender=get_user_model(), dispatch_uid="census.user_saved")
    try:
        return [get_user_model().objects.create_user(username=cedula()) for _ in range(count)]
    finally:
        from census import receivers

        receivers.connect()


def _lookups(size: int, clusters: Clusters) -> float:
    from census.models import CedulaInfo

    members = _members(size)
    started = time.time()
    ids = []
    for member in members:
        with transaction.atomic():
            ids.append(start.start_lookup(member).pk)
    wait_final(ids, timeout=60 + size, clusters=clusters)
    last = CedulaInfo.objects.filter(pk__in=ids).aggregate(last=Max("finished_at"))["last"]
    return size / (last.timestamp() - started)


def _noops(size: int, log: Path) -> float:
    from django_q.tasks import async_task

    started = time.time()
    ids = {
        async_task(f"{__name__}.noop", hook=f"{__name__}.noop_hook", group="bench-noop")
        for _ in range(size)
    }
    deadline = time.monotonic() + 60 + size
    while time.monotonic() < deadline:
        done = {}
        if log.exists():
            for line in log.read_text().split("\n")[:-1]:  # whole lines only
                task_id, at = line.split()
                done[task_id] = float(at)
        if ids <= done.keys():
            return size / (max(done[i] for i in ids) - started)
        time.sleep(0.1)
    raise RuntimeError("no-op tasks did not finish")


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    rounds, size = params["rounds"], params["batch"]
    log = clusters.work / "noop-hooks.log"
    clusters.start(
        workers=2,
        CENSUS_RATE_LIMIT_SECONDS="0",
        CENSUS_FAKE_STATE_DIR="",  # positions in memory: the fake does no file work
        **{NOOP_LOG: str(log)},
    )
    clusters.wait_ready()
    throughput: dict[str, list[float]] = {"lookups": [], "noops": []}
    for round_ in range(rounds + 1):  # round 0 warms up and is not counted
        order = ("lookups", "noops") if round_ % 2 else ("noops", "lookups")
        for kind in order:
            value = _lookups(size, clusters) if kind == "lookups" else _noops(size, log)
            if round_:
                throughput[kind].append(value)
    medians = {kind: statistics.median(values) for kind, values in throughput.items()}
    return {
        "orchestration_throughput_ratio": medians["lookups"] / medians["noops"],
        "info": {
            "per_batch": size,
            "batches_per_side": rounds,
            "lookups_per_s": [round(v, 1) for v in throughput["lookups"]],
            "noops_per_s": [round(v, 1) for v in throughput["noops"]],
        },
    }
