"""The gate itself where it binds: many workers, the real gate and database, no browser.

``workers`` processes each take ``turns`` turns through census's gate
(``census.gate.waiter.GateWaiter``: reserve, sleep, permit, confirm the send) with a scraper
that costs no CPU: a turn's "request" is the moment ``wait_turn`` lets it go, stamped on
``time.monotonic()`` (one clock for every process of the host) just before ``sent()``. At
``limit`` seconds:

- utilisation: ``(sends - 1) x limit / (last - first)`` (1.0: a send every limit);
- violations: consecutive sends closer than the limit;
- makespan: ``last - first`` over ``(sends - 1) x limit``.

With Chromium (``rate``) the cores bind before the gate does; this shows the gate's own
ceiling: the limit plus ``SEND_MARGIN`` plus a permit and a confirm per send.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import ROOT, Clusters

_TURNS = """
import sys, time
import django
django.setup()
from census.gate.waiter import GateWaiter
name, limit, turns, start_at = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
gate = GateWaiter(name, interval=limit)
time.sleep(max(0.0, start_at - time.time()))
for _ in range(turns):
    slot = gate.wait_turn()
    print(repr(time.monotonic()), flush=True)
    gate.sent(slot)
"""


def _sends(name: str, limit: float, workers: int, turns: int) -> list[float]:
    start_at = time.time() + 3.0  # every process imported and waiting: a burst
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TURNS, name, str(limit), str(turns), str(start_at)],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    outputs = [proc.communicate(timeout=turns * workers * limit * 3 + 120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(err[-2000:])
    return sorted(float(line) for out, _ in outputs for line in out.split())


def _figures(sends: list[float], limit: float) -> dict[str, float]:
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    span = sends[-1] - sends[0]
    return {
        "utilisation": (len(sends) - 1) * limit / span,
        "violations": sum(gap < limit for gap in gaps),
        "makespan_ratio": span / ((len(sends) - 1) * limit),
        "min_gap_s": min(gaps),
    }


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    workers, turns = params["workers"], params["turns"]
    result: dict[str, Any] = {"info": {"workers": workers, "turns_per_worker": turns}}
    for limit, suffix in ((1.0, ""), (0.2, "_fast")):
        figures = _figures(_sends(f"bench-binds-{limit:g}", limit, workers, turns), limit)
        result[f"gate_utilisation{suffix}"] = figures["utilisation"]
        result[f"gate_violations{suffix}"] = figures["violations"]
        result[f"gate_makespan_ratio{suffix}"] = figures["makespan_ratio"]
        result["info"][f"min_gap_s{suffix}"] = round(figures["min_gap_s"], 4)
    return result
