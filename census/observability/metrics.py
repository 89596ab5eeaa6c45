"""Prometheus metrics, derived from the database at each scrape.

Every figure is read from census's tables, so it is the same whichever host, cluster or
worker made the change and whichever web process answers the scrape: no per-process
registry to merge (prometheus_client's multiprocess mode only merges one host's processes
and loses a dead worker's counts on restart). Counters are counts of rows that are never
deleted (``Attempt``, ``CaptchaToken``), so they only grow. No label is ever a cédula or a
user id.

Mount the view and give it a token or a permission::

    path("metrics/census", census.observability.metrics.metrics_view)   # urls.py
    CENSUS_METRICS_TOKEN = "..."   # Prometheus sends "Authorization: Bearer ..."

Without a token, only users who may view lookups (``census.view_cedulainfo``) get it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse

from census.conf import settings
from census.gate import pause
from census.gate.rules import BreakerPhase
from census.gate.shares import SHARED, WorkClass
from census.lookup.capacity import queues
from census.models import Attempt, CedulaInfo, FollowUp, PageSnapshot, Status
from census.observability.stats import (
    breaker_state,
    daily_left,
    solve_ledger,
    solving_service_state,
)
from census.outcomes import Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: an attempt in the browser (the scrape timeout is 90 s by default).
DURATION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0)
#: Seconds from an attempt's start to its request leaving: the gate's wait and the page.
SEND_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Seconds a scheduled attempt started after its due time.
LATENESS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus's text format, for a bearer token or a permitted user."""
    if not _allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(render(), content_type=CONTENT_TYPE)


def _allowed(request: HttpRequest) -> bool:
    token = settings.metrics_token
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.has_perm("census.view_cedulainfo"))


def render() -> str:
    """Every census metric, one family after the other."""
    lines: list[str] = []
    by_status = dict(CedulaInfo.objects.values_list("status").annotate(n=Count("pk")))
    lines += _family(
        "census_lookups",
        "gauge",
        "Lookups by current status.",
        ((f'status="{s.value}"', by_status.get(s.value, 0)) for s in Status),
    )
    finished = Attempt.objects.exclude(outcome="")
    by_outcome = dict(finished.values_list("outcome").annotate(n=Count("pk")))
    lines += _family(
        "census_attempts_total",
        "counter",
        "Attempts that ended, by outcome (deferred: nothing was sent).",
        ((f'outcome="{o.value}"', by_outcome.get(o.value, 0)) for o in Outcome),
    )
    lines += _histogram(
        "census_attempt_duration_seconds",
        "Time an attempt took, from its claim to its report.",
        finished.exclude(outcome=Outcome.DEFERRED.value).filter(duration_ms__isnull=False),
        F("duration_ms"),
        DURATION_BUCKETS,
        scale=1000.0,
    )
    sent = Attempt.objects.filter(sent_at__isnull=False)
    lines += _histogram(
        "census_attempt_send_delay_seconds",
        "Time from an attempt's start to its request leaving (the gate's wait and the page).",
        sent,
        _seconds("sent_at", "started_at"),
        SEND_BUCKETS,
    )
    lines += _histogram(
        "census_retry_lateness_seconds",
        "How late a scheduled attempt started after it was due.",
        Attempt.objects.filter(due_at__isnull=False),
        _seconds("started_at", "due_at"),
        LATENESS_BUCKETS,
    )
    breaker = breaker_state()
    lines += _family(
        "census_breaker_phase",
        "gauge",
        "The cluster-wide breaker's phase: 1 for the current one.",
        ((f'phase="{p.value}"', int(breaker.state is p)) for p in BreakerPhase),
    )
    lines += _family(
        "census_breaker_consecutive_blocks",
        "gauge",
        "Blocks in a row without an answer in between.",
        [("", breaker.consecutive_blocks)],
    )
    lines += _family(
        "census_site_changed",
        "gauge",
        "1 while the site counts as changed (answers in no known shape in a row).",
        [("", int(breaker.site_changed_since is not None))],
    )
    lines += _family(
        "census_unexpected_streak",
        "gauge",
        "Answers in no known shape since the last one in a known shape.",
        [("", breaker.unexpected_streak)],
    )
    seen = PageSnapshot.objects.aggregate(n=Count("pk"), total=Sum("count"))
    lines += _family(
        "census_unexpected_signatures",
        "gauge",
        "Distinct signatures of answers in no known shape kept (one snapshot each).",
        [("", seen["n"] or 0)],
    )
    lines += _family(
        "census_unexpected_pages_total",
        "counter",
        "Answers in no known shape, over the signatures kept.",
        [("", seen["total"] or 0)],
    )
    lines += _family(
        "census_deferred_lookups",
        "gauge",
        "Lookups waiting on the closed gate (their last attempt was deferred).",
        [("", breaker.waiting)],
    )
    lines += _family(
        "census_paused",
        "gauge",
        "1 while an operator has paused all census traffic (census_pause).",
        [("", int(pause.current() is not None))],
    )
    follow_ups = dict(FollowUp.objects.values_list("state").annotate(n=Count("pk")))
    lines += _family(
        "census_follow_ups",
        "gauge",
        "Follow-ups by state.",
        ((f'state="{s.value}"', follow_ups.get(s.value, 0)) for s in FollowUp.State),
    )
    lines += _work_classes()
    lines += _captcha()
    return "\n".join(lines) + "\n"


def _work_classes() -> list[str]:
    """Each work class's queue, its share, and the consultas it ever sent (every class's
    series, zeros too; attempts from before work classes count under none).

    The sent count is a counter like ``census_attempts_total``: ``Attempt`` rows are never
    deleted, an attempt's class is written when it is claimed and kept, and ``sent`` only
    ever becomes True. The last hour alone (``queues``' ``sent_last_hour``) would be a gauge
    that Prometheus's ``rate`` cannot use."""
    classes = queues()
    lines = _family(
        "census_lookups_waiting",
        "gauge",
        "Lookups that want the site now or soon (queued, running, due within 30 s), by work class.",
        ((f'work_class="{q.work_class.value}"', q.waiting) for q in classes),
    )
    lines += _family(
        "census_capacity_share",
        "gauge",
        "Share of the site's requests a work class may use while registrations wait "
        "(CENSUS_CAPACITY_SHARES).",
        (
            (f'work_class="{q.work_class.value}"', q.share or 0)
            for q in classes
            if q.work_class in SHARED
        ),
    )
    sent = dict(Attempt.objects.filter(sent=True).values_list("work_class").annotate(n=Count("pk")))
    lines += _family(
        "census_consultas_sent_total",
        "counter",
        "Consultas sent to the census site, by the work class of the attempt that sent them.",
        ((f'work_class="{cls.value}"', sent.get(cls.value, 0)) for cls in WorkClass),
    )
    return lines


#: ``census_captcha_solves_total``'s results: what became of the solves, never undone.
SOLVE_RESULTS = ("asked", "paid", "used", "refused", "wasted", "failed")
#: ``census_captcha_tokens``' states: solves on their way to a result.
TOKEN_STATES = ("solving", "ready", "held")


def _captcha() -> list[str]:
    """The token pool's solves and the solving service's breaker (every series, zeros too,
    configured or not)."""
    solves = solve_ledger()
    service = solving_service_state()
    lines = _family(
        "census_captcha_solves_total",
        "counter",
        "Captcha solves by result: asked, paid (delivered), used (sent), refused (sent, the "
        "site said no), wasted (paid, never sent), failed (not delivered, not paid).",
        ((f'result="{r}"', solves[r]) for r in SOLVE_RESULTS),
    )
    lines += _family(
        "census_captcha_tokens",
        "gauge",
        "Solves in flight: being solved, ready in the pool, held by an attempt.",
        ((f'state="{s}"', solves[s]) for s in TOKEN_STATES),
    )
    paused = service.state == "paused"
    lines += _family(
        "census_captcha_service_paused",
        "gauge",
        "1 while the solving service is paused (nothing asked until a probe answers), "
        "with the reason.",
        [(f'reason="{_label(service.reason or "unavailable")}"' if paused else "", int(paused))],
    )
    lines += _family(
        "census_captcha_service_failed_probes",
        "gauge",
        "Probes of the paused solving service that failed (the backoff doubles with each).",
        [("", service.failed_probes)],
    )
    left = daily_left()
    if left is not None:
        lines += _family(
            "census_captcha_daily_left",
            "gauge",
            "Solves CENSUS_CAPTCHA_DAILY_LIMIT still allows today (server's local day).",
            [("", left)],
        )
    return lines


def _label(value: str) -> str:
    """A label value in Prometheus's text format (backslash, quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(
            f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}"
        )
    return lines


def _seconds(later: str, earlier: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(later) - F(earlier), output_field=DurationField())


def _histogram(
    name: str,
    help_text: str,
    rows: QuerySet[Attempt],
    value: Any,
    buckets: Sequence[float],
    *,
    scale: float | None = None,
) -> list[str]:
    """Cumulative buckets, count and sum in one query (``le`` in seconds); ``scale`` turns
    a number column into seconds (milliseconds: 1000), else the value is a duration."""
    annotated = rows.annotate(_v=value)

    def bound(limit: float) -> Any:
        return limit * scale if scale else timedelta(seconds=limit)

    counts = annotated.aggregate(
        _n=Count("pk"),
        _sum=Sum("_v"),
        **{f"_b{i}": Count("pk", filter=Q(_v__lte=bound(b))) for i, b in enumerate(buckets)},
    )
    raw = counts["_sum"]
    total = 0.0 if raw is None else (raw / scale if scale else raw.total_seconds())
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for i, b in enumerate(buckets):
        lines.append(f'{name}_bucket{{le="{float(b)!r}"}} {counts[f"_b{i}"]}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {counts["_n"]}')
    lines.append(f"{name}_sum {_number(round(total, 6))}")
    lines.append(f"{name}_count {counts['_n']}")
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
