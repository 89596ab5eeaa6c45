"""Per-lookup wall time: a Chromium launched per lookup vs one warm Chromium per worker.

Runs both modes side by side (alternating, so load on the machine hits both alike) against
the local census simulator, with no rate limit, and prints the median of each and their ratio.
``./bench`` runs it as measurement 6 (``browser_warm_vs_launch_ratio``: launch / warm).

    .venv/bin/python benchmarks/bench_browser.py --lookups 12
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from census.gate.protocol import OpenGate
from census.outcomes import Outcome
from census.scraper.base import LookupResult
from census.scraper.playwright import (
    LookupBudget,
    PlaywrightScraper,
    ScraperConfig,
    launch_browser,
    new_lookup_context,
    run_flow,
)
from census.testing.simulator import CensusSimulator

ROOT = Path(__file__).resolve().parent.parent


class WarmBrowser:
    """The alternative design: one browser on one long-lived thread, a new context per lookup."""

    def __init__(self, config: ScraperConfig) -> None:
        self.config = config
        self.jobs: queue.Queue[tuple[str, Future[LookupResult]] | None] = queue.Queue()
        self.ready = threading.Event()
        self.browser_pid: int | None = None
        self.thread = threading.Thread(target=self._serve, name="warm-browser", daemon=True)
        self.thread.start()
        self.ready.wait(60)

    def lookup(self, cedula: str) -> LookupResult:
        future: Future[LookupResult] = Future()
        self.jobs.put((cedula, future))
        return future.result(timeout=self.config.timeout + 30)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(30)

    def _serve(self) -> None:
        with sync_playwright() as playwright:
            browser = launch_browser(playwright, self.config, 30_000)
            self.ready.set()
            try:
                while (job := self.jobs.get()) is not None:
                    cedula, future = job
                    budget = LookupBudget.start(self.config, OpenGate())
                    context = new_lookup_context(browser, budget.ms())
                    try:
                        future.set_result(run_flow(context.new_page(), cedula, budget))
                    except BaseException as error:
                        future.set_exception(error)
                    finally:
                        context.close()
            finally:
                browser.close()


def _timed(lookup: Callable[[str], LookupResult], cedula: str) -> float:
    started = time.perf_counter()
    result = lookup(cedula)
    elapsed = time.perf_counter() - started
    if result.outcome is not Outcome.FOUND:
        raise SystemExit(f"lookup failed: {result.outcome} {result.detail}")
    return elapsed


def _tree_rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its descendants (needs psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def measure(lookups: int) -> dict[str, Any]:
    """Both modes, alternating, ``lookups`` each after one warm-up lookup of each."""
    with CensusSimulator(captcha="click") as site:
        config = ScraperConfig(site_url=site.url, timeout=60)
        per_lookup = PlaywrightScraper(gate=OpenGate(), config=config)
        rss_before = _tree_rss_mb(os.getpid())
        started = time.perf_counter()
        warm = WarmBrowser(config)
        warm_start = time.perf_counter() - started
        rss_warm = _tree_rss_mb(os.getpid())
        try:
            _timed(per_lookup.lookup, "1000000000")  # one of each first: disk caches
            _timed(warm.lookup, "1000000000")
            times: dict[str, list[float]] = {"per_lookup": [], "warm": []}
            for n in range(lookups):
                cedula = f"10{n:08d}"
                times["per_lookup"].append(_timed(per_lookup.lookup, cedula))
                times["warm"].append(_timed(warm.lookup, cedula))
        finally:
            warm.close()
    held = None if rss_before is None or rss_warm is None else rss_warm - rss_before
    return {"times": times, "warm_start": warm_start, "warm_held_mb": held}


def run(params: dict[str, Any], clusters: Any) -> dict[str, Any]:
    """Measurement 6 of ./bench (benchmarks/run.py)."""
    measured = measure(params["lookups"])
    medians = {mode: statistics.median(values) for mode, values in measured["times"].items()}
    return {
        "browser_warm_vs_launch_ratio": medians["per_lookup"] / medians["warm"],
        "info": {
            "lookups_per_mode": params["lookups"],
            "launch_median_s": round(medians["per_lookup"], 2),
            "warm_median_s": round(medians["warm"], 2),
            "warm_browser_start_s": round(measured["warm_start"], 2),
            "warm_browser_held_mb": round(measured["warm_held_mb"] or 0),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=12, help="lookups per mode")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "example")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    measured = measure(args.lookups)
    times = measured["times"]

    print(f"{args.lookups} lookups per mode against the simulator, {os.cpu_count()} CPUs")
    for mode, values in times.items():
        print(
            f"  {mode:<11} median {statistics.median(values):.2f}s  "
            f"mean {statistics.mean(values):.2f}s  min {min(values):.2f}s  max {max(values):.2f}s"
        )
    ratio = statistics.median(times["per_lookup"]) / statistics.median(times["warm"])
    extra = statistics.median(times["per_lookup"]) - statistics.median(times["warm"])
    print(f"  per_lookup / warm median ratio {ratio:.2f} (+{extra:.2f}s per lookup)")
    print(f"  warm browser start-up (once per worker) {measured['warm_start']:.2f}s")
    if measured["warm_held_mb"] is not None:
        print(
            f"  RSS a warm browser keeps per idle worker ~{measured['warm_held_mb']:.0f} MB "
            "(shared pages count twice)"
        )


if __name__ == "__main__":
    main()
