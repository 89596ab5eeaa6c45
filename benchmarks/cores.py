"""Chromium lookups on more workers than the cores can drive, with the per-host browser limit.

The rate measurement's set-up (4 workers, Chromium, the simulator, a 1 s limit) with an 8 s
scrape timeout: four Chromiums sharing two cores run out of time in their own work (page
load, form, captcha) before the consulta leaves. ``CENSUS_BROWSERS_PER_HOST`` (default: the
host's cores) keeps the browsers a host runs to what it can drive; a worker that waits for a
browser, or runs out of time in its own stages, is deferred without charging the member.

- ``cores_lookups_failed``: lookups that did not end ``found`` (goal 0);
- ``cores_charged_unsent``: attempts charged to a member that sent nothing (goal 0).

The ``cores_unlimited`` variant (``CENSUS_BROWSERS_PER_HOST = 0``) shows the same load with
no limit, beside it; ``lookups_per_s_the_cores_allow`` says what the CPU sustains.
"""

from __future__ import annotations

from typing import Any

from benchmarks import rate
from benchmarks.harness import Clusters


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    browser = {"scrape_timeout": params["scrape_timeout"], "browsers": params.get("browsers")}
    figures = rate.run({**params, "browser": browser}, clusters)
    info = figures["info"]
    return {
        "cores_lookups_failed": info["lookups_failed"],
        "cores_charged_unsent": info["charged_unsent"],
        "info": {
            **info,
            "rate_utilisation": round(figures["rate_utilisation"], 3),
            "rate_violations": figures["rate_violations"],
            "burst_makespan_ratio": round(figures["burst_makespan_ratio"], 3),
        },
    }
