"""8. Solving the captcha ahead (the token pool) against solving it inside each attempt.

The same burst twice, one after the other, each on a fresh simulator and solving service:
``lookups`` members register at once and one qcluster of 2 workers looks them up in real
Chromium against the live-like simulator (an image challenge on every click, each
consulta's token verified with the service) with the local solving service at
``solve_seconds`` a solve and the limit at ``limit`` seconds. First with the pool
(``CENSUS_CAPTCHA_POOL = True``: solves asked ahead by each worker's pool thread, a token
taken before the browser opens), then with the solve inside the attempt
(``CENSUS_CAPTCHA_POOL = False``: it holds the worker and a browser for the solve), for
``in_attempt_lookups`` members (it is several times slower).

Per mode (``captcha_pool_*``, ``captcha_in_attempt_*``):

- ``rate_utilisation``: the achieved consulta rate over the limit, from the simulator's
  access log, as rate.py: ``(consultas - 1) / (last - first) * limit``;
- ``paid_per_consulta``: solves the service charged over consultas the site received (the
  service's solves still running when the lookups ended are waited for, then counted);
- ``expired``: tokens the site refused as expired, plus tokens paid and thrown away
  (``wasted`` in census's own ledger, ``census.captcha.pool.ledger``).

``captcha_pool_vs_in_attempt_utilisation_ratio`` puts the two utilisations side by side.
``info`` gives each mode's lookups, consultas, the service's and census's ledgers, the
deferrals by reason, the makespan (first registration to last final status), the oldest
token at its consulta, and ``gate_idle_with_token_ready_s``: seconds the gate could have let
a consulta go while a solved token waited in the pool, taken by no attempt.
Each mode's timeline (tokens, attempts, consultas, seconds from the registrations; no
cédula) is written to ``captcha-<mode>.json`` in the measurement's work directory
(``./bench --keep`` keeps it).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db.models import Max
from django.test import override_settings
from django.utils import timezone

from benchmarks.harness import Clusters, cedula, register, wait_final
from benchmarks.rate import browser_env
from census.captcha import pool
from census.conf import TASK_TIMEOUT_MARGIN
from census.models import Attempt, CaptchaToken, CedulaInfo, Status
from census.testing.simulator import CensusSimulator
from census.testing.solving_service import SolvingService

#: Seconds the browser may take (a solve inside the attempt comes on top), and a solve inside
#: the attempt (census's default).
SCRAPE_TIMEOUT = 30.0
SOLVE_TIMEOUT = 120.0
_DIGITS = re.compile(r"\d{6,}")


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    work = clusters.work
    ahead = _burst(params["lookups"], params, clusters, work, pooled=True)
    inside = _burst(params["in_attempt_lookups"], params, clusters, work, pooled=False)
    figures: dict[str, Any] = {}
    for prefix, mode in (("captcha_pool", ahead), ("captcha_in_attempt", inside)):
        for key in ("rate_utilisation", "paid_per_consulta", "expired"):
            figures[f"{prefix}_{key}"] = mode.pop(key)
    utilisation = figures["captcha_in_attempt_rate_utilisation"]
    figures["captcha_pool_vs_in_attempt_utilisation_ratio"] = (
        figures["captcha_pool_rate_utilisation"] / utilisation if utilisation else 0.0
    )
    figures["info"] = {
        "limit_s": params["limit"],
        "solve_s": params["solve_seconds"],
        "workers": 2,
        "pool": ahead,
        "in_attempt": inside,
    }
    return figures


def _burst(
    count: int, params: dict[str, Any], clusters: Clusters, work: Path, *, pooled: bool
) -> dict[str, Any]:
    """One burst of ``count`` lookups in one mode; its figures and what they came from."""
    limit, solve = params["limit"], params["solve_seconds"]
    scrape = params.get("scrape_timeout", SCRAPE_TIMEOUT)
    solve_timeout = params.get("solve_timeout", SOLVE_TIMEOUT)
    # Census's task timeout (scrape + a solve inside the attempt + margin); Q_CLUSTER's
    # timeout follows it and its retry stays above the backlog (benchmarks/settings.py).
    task_timeout = int(scrape + (0 if pooled else solve_timeout)) + TASK_TIMEOUT_MARGIN
    with (
        SolvingService(solve_seconds=solve) as service,
        CensusSimulator(token_verifier=service.verify) as site,
    ):
        env = {
            **browser_env(site, limit, scrape_timeout=scrape),
            "CENSUS_TEST_CAPTCHA_JSON": json.dumps(service.setting()),
            "CENSUS_CAPTCHA_POOL": "1" if pooled else "0",
            "CENSUS_CAPTCHA_SOLVE_TIMEOUT": f"{solve_timeout:g}",
            "CENSUS_Q_TIMEOUT": str(task_timeout),
        }
        clusters.start(workers=2, **env)
        clusters.wait_ready()
        since = timezone.now()
        first = time.time()
        # The registrations queue each first attempt with census's task timeout: this
        # process must reckon it as the clusters do (with the solve inside the attempt).
        with override_settings(
            CENSUS_CAPTCHA=service.setting(),
            CENSUS_CAPTCHA_POOL=pooled,
            CENSUS_CAPTCHA_SOLVE_TIMEOUT=solve_timeout,
            CENSUS_SCRAPE_TIMEOUT=scrape,
        ):
            ids = register([cedula("10") for _ in range(count)])
        wait_final(ids, timeout=count * (limit + solve) + 3 * task_timeout, clusters=clusters)
        clusters.stop()
        # A solve the service still works on is paid when its time is up, taken or not.
        deadline = time.monotonic() + solve + 10
        while time.monotonic() < deadline:
            ledger = service.ledger()
            if ledger.paid + ledger.unsolvable == ledger.created:
                break
            time.sleep(0.2)
        ledger = service.ledger()
        consultas = site.consultas()
        rejections = site.token_rejections()

    times = sorted(record.monotonic for record in consultas)
    lookups = CedulaInfo.objects.filter(pk__in=ids)
    last = lookups.aggregate(last=Max("finished_at"))["last"].timestamp()
    counted = pool.ledger(since=since)
    mode = "pool" if pooled else "in_attempt"
    attempts = Attempt.objects.filter(lookup__in=lookups)
    timeline = _timeline(first, consultas, attempts, since)
    (work / f"captcha-{mode}.json").write_text(json.dumps(timeline, indent=1))
    sent = sorted(t["sent"] for t in timeline["consultas"])
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    solved = [t["solved"] for t in timeline["tokens"] if t["solved"] is not None]
    ages = _ages_at_send(timeline)
    return {
        "rate_utilisation": (len(times) - 1) / (times[-1] - times[0]) * limit
        if len(times) > 1
        else 0.0,
        "paid_per_consulta": ledger.paid / len(times) if times else float(ledger.paid),
        "expired": rejections.get("expired", 0) + counted["wasted"],
        "lookups": count,
        "found": lookups.filter(status=Status.FOUND).count(),
        "consultas": len(times),
        "token_rejections": rejections,
        "service": {
            "created": ledger.created,
            "paid": ledger.paid,
            "delivered": ledger.delivered,
            "used": ledger.used,
            "wasted": ledger.wasted,
            "unsolvable": ledger.unsolvable,
        },
        "census_ledger": counted,
        "attempt_outcomes": dict(Counter(attempts.values_list("outcome", flat=True))),
        "deferrals": dict(
            Counter(
                _reason(e)
                for e in attempts.filter(outcome="deferred").values_list("error", flat=True)
            )
        ),
        "first_token_solved_s": min(solved, default=None),
        "first_consulta_s": round(sent[0], 1) if sent else None,
        "max_token_age_at_send_s": round(max(ages), 1) if ages else None,
        "consultas_span_s": round(times[-1] - times[0], 1) if times else None,
        "longest_gap_s": round(max(gaps), 1) if gaps else None,
        "gate_idle_with_token_ready_s": round(_idle_with_token_ready(timeline, limit), 1),
        "makespan_s": round(last - first, 1),
        "task_timeout_s": task_timeout,
    }


def _ages_at_send(timeline: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Seconds from each used token's solve to its consulta (the attempt's send)."""
    sent_at = {(a["lookup"], a["step"]): a["sent"] for a in timeline["attempts"]}
    return [
        sent - t["solved"]
        for t in timeline["tokens"]
        if t["state"] == "used" and (sent := sent_at.get((t["lookup"], t.get("step")))) is not None
    ]


def _idle_with_token_ready(timeline: dict[str, list[dict[str, Any]]], limit: float) -> float:
    """Seconds the gate could have let a consulta go (a limit past the last one, before the
    next) while a solved token waited in the pool, ready and taken by no attempt."""
    sent = sorted(c["sent"] for c in timeline["consultas"])
    waiting = [
        (t["solved"], t["held"] if t["held"] is not None else t["finished"])
        for t in timeline["tokens"]
        if t["mode"] == CaptchaToken.Mode.POOL and t["solved"] is not None
    ]
    idle = 0.0
    for previous, following in zip(sent, sent[1:], strict=False):
        start = previous + limit
        spans = sorted(
            (max(solved, start), min(following if taken is None else taken, following))
            for solved, taken in waiting
        )
        reached = start
        for begin, end in spans:
            if end > max(begin, reached):
                idle += end - max(begin, reached)
                reached = end
    return idle


def _reason(error: str) -> str:
    """A deferral's reason, as its detail starts (``captcha_token: waiting for a solved token
    (3 being solved): ...`` -> ``captcha_token: waiting for a solved token``)."""
    return _DIGITS.sub("*", ":".join(error.split(":", 2)[:2]).split(" (")[0])[:80]


def _timeline(
    first: float, consultas: list[Any], attempts: Any, since: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Seconds from the registrations: each token, attempt and consulta (no cédula)."""

    def at(moment: datetime | None) -> float | None:
        return None if moment is None else round(moment.timestamp() - first, 2)

    tokens = CaptchaToken.objects.filter(asked_at__gte=since).order_by("asked_at")
    return {
        "tokens": [
            {
                "id": t.pk,
                "mode": t.mode,
                "state": t.state,
                "lookup": t.lookup_id,
                "step": t.step,
                "asked": at(t.asked_at),
                "solved": at(t.solved_at),
                "held": at(t.held_at),
                "finished": at(t.finished_at),
                "refused": t.refused,
                "error": t.error,
            }
            for t in tokens
        ],
        "attempts": [
            {
                "lookup": a.lookup_id,
                "step": a.step,
                "outcome": a.outcome,
                "due": at(a.due_at),
                "started": at(a.started_at),
                "sent": at(a.sent_at),
                "finished": at(a.finished_at),
                "retry_after": a.retry_after,
                "error": _DIGITS.sub("*", a.error)[:160],
            }
            for a in attempts.order_by("started_at")
        ],
        "consultas": [
            {"sent": round(r.time - first, 2), "status": r.status, "scenario": r.scenario}
            for r in consultas
        ],
    }
