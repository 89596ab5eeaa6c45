"""3. How punctual retries are: lateness of each retry against its due time, idle cluster.

Members register one at a time, ``spacing`` seconds apart on average (jittered, so that due
times fall at every phase of the scheduler's tick); each lookup times out once and is
found on its retry (fake scraper, no rate limit, a 2 s retry delay), so the retries come due
one by one on an otherwise idle cluster (2 workers). ``census.observability.stats`` gives
both figures:
queueing lateness (Django-Q2's ``Task.started`` for the retry's task - ``Attempt.due_at``:
the scheduler alone) and start lateness (``Attempt.started_at - due_at``: scheduler, broker
and worker). With ``stock`` the census ticker is off (``CENSUS_SCHEDULER_TICK=0``) and only
Django-Q2's own scheduler runs, every 30 s in the sentinel.
"""

from __future__ import annotations

import random
import time
from typing import Any

from django.conf import settings

from benchmarks.harness import Clusters, cedula, register, wait_final
from census.models import CedulaInfo, Status
from census.observability import stats

RETRY_DELAY = 2


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    members, spacing, stock = params["members"], params["spacing"], params.get("stock", False)
    numbers = [cedula() for _ in range(members)]
    tick = "0" if stock else f"{settings.CENSUS_SCHEDULER_TICK:g}"
    clusters.start(
        workers=2,
        script={number: ["timeout", "found"] for number in numbers},
        CENSUS_RATE_LIMIT_SECONDS="0",
        CENSUS_RETRY_DELAYS=str(RETRY_DELAY),
        CENSUS_SCHEDULER_TICK=tick,
    )
    clusters.wait_ready()
    ids = []
    jitter = random.Random(1)
    for number in numbers:
        ids += register([number])
        time.sleep(spacing * jitter.uniform(0.5, 1.5))
    wait_final(ids, timeout=members * spacing + (100 if stock else 60), clusters=clusters)

    lookups = CedulaInfo.objects.filter(pk__in=ids)
    if lookups.exclude(status=Status.FOUND).exists() or lookups.exclude(retry_count=1).exists():
        raise RuntimeError("every lookup should be found on its one retry")
    figures = stats.compute(lookups)
    queued, started = figures.retry_queue_lateness, figures.retry_lateness
    if queued.count != members or started.count != members:
        raise RuntimeError(f"{members} retries, lateness of {queued.count}/{started.count}")
    info = {
        "retries": members,
        "scheduler_tick_s": float(tick),
        "queue_lateness_median_s": round(queued.median, 3),
        "queue_lateness_max_s": round(queued.max, 3),
        "start_lateness_median_s": round(started.median, 3),
        "start_lateness_max_s": round(started.max, 3),
    }
    if stock:
        info["queue_lateness_p95_s"] = round(queued.p95, 3)
        return {"stock_retry_start_lateness_p95_s": started.p95, "info": info}
    return {
        "retry_queue_lateness_p95_s": queued.p95,
        "retry_start_lateness_p95_s": started.p95,
        "info": info,
    }
