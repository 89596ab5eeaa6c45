"""4 and 5. How well the cluster-wide rate gate uses the limit, and how long a burst takes.

``lookups`` members register at once; 4 workers look them up in real Chromium against the
census simulator with the limit at ``limit`` seconds: two qclusters of 2 workers on
PostgreSQL + Redis when the runner has the servers, else one qcluster of 4 on SQLite.

- utilisation: the achieved request rate over the limit, from the simulator's access log:
  ``(requests - 1) / (last - first) * limit`` (1.0: a request every ``limit`` seconds);
- violations: consecutive requests closer than the limit (monotonic arrival times);
- burst makespan: first registration to last final status, over ``lookups x limit``.

``info`` also gives the CPU time the clusters spent per lookup (Chromium included) and the
lookup rate the machine's cores could sustain at that cost: when that is below one per
``limit``, the CPU, not the gate, bounds both figures.
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from typing import Any

from django.db.models import Max

from benchmarks.harness import Clusters, cedula, register, wait_final
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome
from census.testing.simulator import CensusSimulator


def browser_env(
    site: CensusSimulator, limit: float, scrape_timeout: float = 30, browsers: int | None = None
) -> dict[str, str]:
    """Chromium against the simulator; ``browsers``: ``CENSUS_BROWSERS_PER_HOST`` (None: its
    default, the host's cores)."""
    env = {
        "CENSUS_SCRAPER": "census.scraper.playwright.PlaywrightScraper",
        "CENSUS_SITE_URL": site.url,
        "CENSUS_RATE_LIMIT_SECONDS": f"{limit:g}",
        "CENSUS_SCRAPE_TIMEOUT": f"{scrape_timeout:g}",
        "CENSUS_Q_TIMEOUT": "90",
        "CENSUS_RETRY_DELAYS": "2,3,4",
    }
    if browsers is not None:
        env["CENSUS_BROWSERS_PER_HOST"] = str(browsers)
    return env


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    count, limit = params["lookups"], params["limit"]
    with CensusSimulator(captcha="click") as site:
        env = browser_env(site, limit, **params.get("browser", {}))
        for workers in (2, 2) if params["servers"] else (4,):
            clusters.start(workers=workers, **env)
        clusters.wait_ready()
        numbers = [cedula("10") for _ in range(count)]
        first = time.time()
        ids = register(numbers)
        wait_final(ids, timeout=count * limit * 5 + 120, clusters=clusters)
        times = sorted(record.monotonic for record in site.consultas())
        clusters.stop()  # reaped, their CPU time (Chromium's included) is ours to read
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_per_lookup = (cpu.ru_utime + cpu.ru_stime) / count

    lookups = CedulaInfo.objects.filter(pk__in=ids)
    last = lookups.aggregate(last=Max("finished_at"))["last"].timestamp()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    attempts = Attempt.objects.filter(lookup__in=lookups)
    outcomes = Counter(attempts.values_list("outcome", flat=True))
    charged = attempts.exclude(outcome=Outcome.DEFERRED.value)
    return {
        "rate_utilisation": (len(times) - 1) / (times[-1] - times[0]) * limit,
        "rate_violations": sum(gap < limit for gap in gaps),
        "burst_makespan_ratio": (last - first) / (count * limit),
        "info": {
            "lookups": count,
            "limit_s": limit,
            "clusters": len(clusters.started),
            "workers": sum(c.workers for c in clusters.started),
            "requests": len(times),
            "min_gap_s": round(min(gaps), 3) if gaps else None,
            "makespan_s": round(last - first, 1),
            "found": lookups.filter(status=Status.FOUND).count(),
            "lookups_failed": lookups.exclude(status=Status.FOUND).count(),
            "charged_unsent": charged.filter(sent=False).count(),
            "browsers_per_host": env.get("CENSUS_BROWSERS_PER_HOST", "cores"),
            "scrape_timeout_s": float(env["CENSUS_SCRAPE_TIMEOUT"]),
            "attempt_outcomes": dict(outcomes),
            "cpu_s_per_lookup": round(cpu_per_lookup, 2),
            "lookups_per_s_the_cores_allow": round((os.cpu_count() or 1) / cpu_per_lookup, 2),
        },
    }
