"""Where should the cluster-wide rate gate live: its PostgreSQL row, or Redis? (Issue 8.)

``threads`` threads each reserve ``calls`` slots one after the other, all on one gate, first
through census's gate (``census.gate.waiter.GateWaiter``: a row under ``SELECT ... FOR UPDATE``
in a transaction, on the gate's helper thread, as the scraper calls it), then through a
Redis gate that only spaces slots (one Lua script: read the next slot, move it on), in
alternating rounds. Figures: the median and p95 time of one reservation on each, and their
ratio. Both are far below what they guard (one request per 5 s): the figures say what a
reservation costs, not what limits throughput. The Redis gate has no breaker and cannot
place a deferral in the same transaction as the lookup's status change, which is why census
keeps the row (README, Running at scale); this measures what that choice costs.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

from benchmarks.harness import Clusters

#: Spacing only: the next free slot moves on by ARGV[1] seconds from max(next slot, now).
_LUA = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), t)
redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])))
return tostring(slot)
"""
INTERVAL = 0.001


def _row_gate() -> Callable[[], object]:
    from census.gate.waiter import GateWaiter

    gate = GateWaiter("bench-gate", interval=INTERVAL)
    return gate.reserve


def _redis_gate() -> Callable[[], object]:
    import redis

    client = redis.Redis.from_url(os.environ["CENSUS_TEST_REDIS"])
    script = client.register_script(_LUA)
    key = f"census-bench-gate-{os.getpid()}"
    return lambda: script(keys=[key], args=[INTERVAL])


def _measure(make: Callable[[], Callable[[], object]], threads: int, calls: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        reserve = make()
        mine = []
        for _ in range(calls):
            started = time.perf_counter()
            reserve()
            mine.append(time.perf_counter() - started)
        connections.close_all()
        with lock:
            times.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return times


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    if not params["servers"]:
        raise RuntimeError("the gate comparison needs PostgreSQL and Redis")
    threads, calls, rounds = params["threads"], params["calls"], params["rounds"]
    times: dict[str, list[float]] = {"row": [], "redis": []}
    for round_ in range(rounds + 1):  # round 0 warms up and is not counted
        order = ("row", "redis") if round_ % 2 else ("redis", "row")
        for name in order:
            measured = _measure(_row_gate if name == "row" else _redis_gate, threads, calls)
            if round_:
                times[name] += measured
    row, red = times["row"], times["redis"]
    return {
        "gate_row_vs_redis_ratio": statistics.median(row) / statistics.median(red),
        "info": {
            "threads": threads,
            "reservations_per_side": len(row),
            "row_median_ms": round(statistics.median(row) * 1000, 3),
            "row_p95_ms": round(_p95(row) * 1000, 3),
            "redis_median_ms": round(statistics.median(red) * 1000, 3),
            "redis_p95_ms": round(_p95(red) * 1000, 3),
        },
    }
