"""Lookup statistics read from the database: what ``census_stats`` prints.

Definitions (also in docs/observability.md):

- *retry lateness*: ``Attempt.started_at - Attempt.due_at`` for scheduled retries only (only
  they have a due time; a first attempt's wait is queueing, not lateness);
- *retry queueing lateness*: when Django-Q2 queued the retry's task (``Task.started``, set
  at enqueue) minus its due time: the scheduler's punctuality alone. A retry queued on time
  but started late waited for a free worker;
- *time to final*: ``CedulaInfo.finished_at - CedulaInfo.created_at`` for lookups in a final
  state (from registration, so a refreshed lookup counts from its registration too);
- *captcha solves*: ``CaptchaToken`` rows by what became of them (``census.captcha.pool.
  ledger``), today (since the server's local midnight, by ``asked_at``) and overall;
- *work classes*: ``census.lookup.capacity.queues``: per class, the lookups that wait
  (queued, running, or due within 30 s), the consultas its attempts sent in the last hour,
  and its share of the site while registrations wait.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django_q.models import Task

from census import database
from census.captcha import breaker as captcha_breaker
from census.captcha import pool as captcha_pool
from census.conf import settings
from census.gate import pause
from census.gate.rules import BreakerPhase
from census.gate.shares import WorkClass
from census.gate.store import GateStore
from census.gate.waiter import DEFAULT_NAME as DEFAULT_GATE
from census.lookup.capacity import ClassQueue, queues
from census.models import (
    FINAL_STATUSES,
    Attempt,
    CaptchaToken,
    CedulaInfo,
    PageSnapshot,
    Status,
)
from census.outcomes import Outcome

#: Seconds after its due time past which a retry counts as late.
DEFAULT_LATE_AFTER = 2.0
#: How an attempt without an outcome yet is counted.
RUNNING = "running"
#: The token pool's ledger (``census.captcha.pool.ledger``) in the order census_stats shows
#: it: solves asked, paid (delivered), used (sent), refused (sent, the site said no: part of
#: used), wasted (paid, never sent), failed (not delivered, not paid), and those in flight.
SOLVE_FIGURES = ("asked", "paid", "used", "refused", "wasted", "failed", "solving", "ready", "held")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """Count, median, 95th percentile and maximum of durations in seconds."""

    count: int
    median: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        data = list(values)
        return cls(
            count=len(data),
            median=percentile(data, 50),
            p95=percentile(data, 95),
            max=max(data) if data else None,
        )


@dataclass(frozen=True, kw_only=True)
class BreakerState:
    """The breaker as the gate row holds it, and how many deferred lookups wait on the gate."""

    #: The gate's ``BreakerPhase`` (a string enum: ``closed``, ``open``, ``probing``,
    #: ``half_open``), as ``census.gate.rules`` decides it.
    state: BreakerPhase
    until: str | None
    consecutive_blocks: int
    #: Lookups in ``retrying`` whose last attempt was deferred by the closed gate.
    waiting: int
    #: Answers in no known shape since the last one in a known shape.
    unexpected_streak: int = 0
    #: While the site counts as changed: since when (ISO time) and the signature.
    site_changed_since: str | None = None
    site_signature: str = ""


def breaker_state(now: datetime | None = None) -> BreakerState:
    """Read the default gate's row (no row yet: closed), on the database's clock."""
    gate, db_now = GateStore(DEFAULT_GATE, inline=True).read()
    now = now or db_now
    phase = gate.phase(now)
    until = gate.phase_until(now)
    waiting = Attempt.objects.filter(
        lookup__status=Status.RETRYING,
        step=F("lookup__step") - 1,
        outcome=Outcome.DEFERRED.value,
    ).count()
    return BreakerState(
        state=phase,
        until=until.isoformat() if until else None,
        consecutive_blocks=gate.consecutive_blocks,
        waiting=waiting,
        unexpected_streak=gate.unexpected_streak,
        site_changed_since=gate.site_changed_at.isoformat() if gate.site_changed_at else None,
        site_signature=gate.site_signature,
    )


@dataclass(frozen=True, kw_only=True)
class SolvingServiceState:
    """The solving service as every host sees it (the shared ``CaptchaService`` row)."""

    #: ``paused`` (nothing is asked of it until a probe answers) or ``ok``.
    state: str
    #: Why it is paused (``zero_balance``, ``bad_key``, ``unreachable``...); "" when ok.
    reason: str = ""
    #: Paused: since when, and when it is probed next (ISO times); None when ok.
    since: str | None = None
    until: str | None = None
    #: Probes that failed since it was paused (the backoff doubles with each).
    failed_probes: int = 0
    #: The census page's site key was seen (the pool asks solves for it).
    site_key_known: bool = False


def solving_service_state() -> SolvingServiceState:
    """Read the shared row (no row yet: ok, no site key known)."""
    row = captcha_breaker.service_row()
    if row is None:
        return SolvingServiceState(state="ok")
    paused = row.open_until is not None
    return SolvingServiceState(
        state="paused" if paused else "ok",
        reason=row.reason if paused else "",
        since=row.opened_at.isoformat() if paused and row.opened_at else None,
        until=row.open_until.isoformat() if row.open_until else None,
        failed_probes=row.failures if paused else 0,
        site_key_known=bool(row.site_key),
    )


def solve_ledger(since: datetime | None = None) -> dict[str, int]:
    """``census.captcha.pool.ledger`` in ``SOLVE_FIGURES``' order."""
    counts = captcha_pool.ledger(since)
    return {figure: counts[figure] for figure in SOLVE_FIGURES}


@dataclass(frozen=True, kw_only=True)
class CaptchaStats:
    """The captcha solves paid for the lookups, and the solving service's breaker."""

    #: ``CENSUS_CAPTCHA``'s service (``2captcha``...), None when it is not set.
    service: str | None
    #: Tokens are solved ahead by the pool (``CENSUS_CAPTCHA_POOL``), not inside attempts.
    pool: bool
    solving_service: SolvingServiceState
    #: ``SOLVE_FIGURES`` since the server's local midnight, and over every solve.
    today: dict[str, int]
    overall: dict[str, int]
    #: Paid solves per lookup that used one (None before any).
    paid_per_lookup_today: float | None
    paid_per_lookup: float | None
    #: ``CENSUS_CAPTCHA_DAILY_LIMIT`` and the solves it still allows today (None: no limit).
    daily_limit: int | None
    daily_left: int | None


def captcha_stats(now: datetime | None = None) -> CaptchaStats | None:
    """The pool's accounting on the database's clock; None when no solving service is
    configured and no solve was ever recorded."""
    service = _captcha_service()
    if service is None and not CaptchaToken.objects.exists():
        return None
    now = now or database.clock()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return CaptchaStats(
        service=service,
        pool=settings.captcha_pool,
        solving_service=solving_service_state(),
        today=solve_ledger(midnight),
        overall=solve_ledger(),
        paid_per_lookup_today=_rounded(captcha_pool.per_lookup(midnight)),
        paid_per_lookup=_rounded(captcha_pool.per_lookup()),
        daily_limit=settings.captcha_daily_limit,
        daily_left=daily_left(now),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def daily_left(now: datetime | None = None) -> int | None:
    """Solves ``CENSUS_CAPTCHA_DAILY_LIMIT`` still allows today (None: no limit). The limit
    counts every solve asked since the server's local midnight but those not delivered."""
    limit = settings.captcha_daily_limit
    if limit is None:
        return None
    return max(limit - captcha_pool.asked_today(now or database.clock()), 0)


def _captcha_service() -> str | None:
    """``CENSUS_CAPTCHA``'s service; a malformed value (the system check names the problem)
    still counts as one configured."""
    try:
        config = settings.captcha
    except ValueError:
        return "invalid CENSUS_CAPTCHA"
    return None if config is None else config.service


@dataclass(frozen=True, kw_only=True)
class CensusStats:
    """Everything ``census_stats`` reports about a set of lookups."""

    lookups: int
    #: Lookups per status, every status listed (zeros included), in lifecycle order.
    by_status: dict[str, int]
    #: Step -> outcome -> attempts (``running`` for attempts not finished yet).
    outcomes_by_step: dict[int, dict[str, int]]
    #: ``final_reason`` -> lookups, for lookups that ended in ``error``.
    error_reasons: dict[str, int]
    #: Attempts a lookup has had -> lookups.
    attempts_used: dict[int, int]
    #: Seconds between a scheduled retry's due time and its start by a worker.
    retry_lateness: Distribution
    #: Seconds between a scheduled retry's due time and Django-Q2 queueing its task.
    retry_queue_lateness: Distribution
    #: Threshold (seconds) and number of retries that started later than it.
    late_after: float
    late_retries: int
    #: Seconds from a lookup's creation to its final state.
    time_to_final: Distribution
    #: The cluster-wide gate's breaker: state, until, consecutive blocks, lookups waiting on it.
    breaker: BreakerState
    #: The operator's pause in force (``since`` ISO time, ``by``, ``reason``), or None.
    paused: dict[str, str] | None = None
    #: Answers in no known shape, one entry per signature, most recently seen first.
    unexpected_pages: list[dict[str, Any]] = field(default_factory=list)
    #: The captcha solves and the solving service; None when none is configured or used.
    captcha: CaptchaStats | None = None
    #: Each work class's queue, consultas sent in the last hour and share, by class name,
    #: highest priority first (``census.lookup.capacity.queues``).
    work_classes: dict[str, ClassQueue] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: nested dicts, keys as strings."""
        data = asdict(self)
        data["outcomes_by_step"] = {
            str(number): outcomes for number, outcomes in self.outcomes_by_step.items()
        }
        data["attempts_used"] = {str(n): count for n, count in self.attempts_used.items()}
        data["work_classes"] = {
            name: {"waiting": q.waiting, "sent_last_hour": q.sent_last_hour, "share": q.share}
            for name, q in self.work_classes.items()
        }
        return data


def compute(
    lookups: QuerySet[CedulaInfo] | None = None, *, late_after: float = DEFAULT_LATE_AFTER
) -> CensusStats:
    """Statistics of ``lookups`` (default: every lookup) and their attempts."""
    lookups = CedulaInfo.objects.all() if lookups is None else lookups
    attempts = Attempt.objects.filter(lookup__in=lookups)

    status_counts = Counter(dict(lookups.values_list("status").annotate(n=Count("pk")).order_by()))
    by_status = {status.value: status_counts.get(status.value, 0) for status in Status}

    outcomes: dict[int, dict[str, int]] = defaultdict(dict)
    rows = attempts.values_list("step", "outcome").annotate(n=Count("pk")).order_by("step")
    for number, outcome, count in rows:
        key = outcome or RUNNING
        outcomes[number][key] = outcomes[number].get(key, 0) + count

    error_reasons = Counter(
        dict(
            lookups.filter(status=Status.ERROR)
            .values_list("final_reason")
            .annotate(n=Count("pk"))
            .order_by()
        )
    )
    # A deferred attempt sent nothing and spent no budget: not an attempt used.
    spent = Count("attempts", filter=~Q(attempts__outcome=Outcome.DEFERRED.value))
    used = Counter(lookups.annotate(n=spent).values_list("n", flat=True).order_by("n"))

    retries = attempts.filter(due_at__isnull=False)
    retry_rows = list(retries.values_list("started_at", "due_at", "task_id"))
    lateness = [(started - due).total_seconds() for started, due, _ in retry_rows if due]
    queued_at = dict(
        Task.objects.filter(id__in=[t for *_, t in retry_rows if t]).values_list("id", "started")
    )
    queue_lateness = [
        (queued_at[task_id] - due).total_seconds()
        for _, due, task_id in retry_rows
        if due and task_id in queued_at
    ]
    finals = lookups.filter(status__in=FINAL_STATUSES, finished_at__isnull=False)
    to_final = [
        (finished - created).total_seconds()
        for finished, created in finals.values_list("finished_at", "created_at")
        if finished
    ]
    return CensusStats(
        lookups=sum(by_status.values()),
        by_status=by_status,
        outcomes_by_step=dict(outcomes),
        error_reasons=dict(error_reasons.most_common()),
        attempts_used=dict(sorted(used.items())),
        retry_lateness=Distribution.of(lateness),
        retry_queue_lateness=Distribution.of(queue_lateness),
        late_after=late_after,
        late_retries=sum(1 for late in lateness if late > late_after),
        time_to_final=Distribution.of(to_final),
        breaker=breaker_state(),
        paused=_paused(),
        unexpected_pages=_unexpected_pages(),
        captcha=captcha_stats(),
        work_classes=work_class_stats(),
    )


def work_class_stats() -> dict[str, ClassQueue]:
    """Every work class's queue, by class name, highest priority first."""
    return {queue.work_class.value: queue for queue in queues()}


def _seconds(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def _rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, two spaces apart."""
    table = [list(map(str, header)), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]


def _distribution_line(label: str, dist: Distribution, digits: int = 1) -> str:
    return (
        f"{label} {dist.count}   median {_seconds(dist.median, digits)}   "
        f"p95 {_seconds(dist.p95, digits)}   max {_seconds(dist.max, digits)}"
    )


def render_table(stats: CensusStats) -> str:
    """The plain-text report ``census_stats`` prints."""
    lines = [f"Census lookups: {stats.lookups}", ""]
    lines += _rows(["Status", "Lookups"], stats.by_status.items())

    lines += ["", "Outcomes per step"]
    seen = sorted({o for counts in stats.outcomes_by_step.values() for o in counts})
    if seen:
        lines += _rows(
            ["Step", *seen, "total"],
            (
                [number, *(counts.get(o, 0) for o in seen), sum(counts.values())]
                for number, counts in sorted(stats.outcomes_by_step.items())
            ),
        )
    else:
        lines.append("(no attempts)")

    lines += ["", "Error reasons (final_reason of lookups in error)"]
    lines += (
        _rows(["Reason", "Lookups"], stats.error_reasons.items())
        if stats.error_reasons
        else ["(none)"]
    )

    lines += ["", "Attempts used per lookup"]
    lines += _rows(["Attempts", "Lookups"], stats.attempts_used.items())

    lines += [
        "",
        "Retry lateness (started_at - due_at, scheduled retries)",
        _distribution_line("retries", stats.retry_lateness, digits=2)
        + f"   late (> {stats.late_after:g} s) {stats.late_retries}",
        "Retry queueing lateness (task queued - due_at: the scheduler alone)",
        _distribution_line("retries", stats.retry_queue_lateness, digits=2),
        "",
        "Time to final state (finished_at - created_at)",
        _distribution_line("lookups", stats.time_to_final),
        "",
        "Breaker (the cluster-wide gate in front of the census site)",
        f"state {stats.breaker.state}"
        + (f" until {stats.breaker.until}" if stats.breaker.until else "")
        + f"   consecutive blocks {stats.breaker.consecutive_blocks}"
        + f"   lookups waiting on it {stats.breaker.waiting}"
        + f"   unexpected answers in a row {stats.breaker.unexpected_streak}",
    ]
    if stats.breaker.site_changed_since:
        lines.append(
            f"SITE CHANGED since {stats.breaker.site_changed_since}: "
            f"{stats.breaker.site_signature} (lookups are deferred, not charged; one probe "
            "per CENSUS_SITE_PROBE_SECONDS)"
        )
    if stats.paused:
        lines.append(
            f"PAUSED since {stats.paused['since']} by {stats.paused['by'] or '?'}"
            + (f": {stats.paused['reason']}" if stats.paused["reason"] else "")
            + " (nothing is sent; census_resume lifts it)"
        )
    lines += ["", "Unexpected pages (one per signature; snapshots in the admin)"]
    lines += (
        _rows(
            ["Signature", "Seen", "First seen", "Last seen"],
            (
                [page["signature"], page["count"], page["first_seen"], page["last_seen"]]
                for page in stats.unexpected_pages
            ),
        )
        if stats.unexpected_pages
        else ["(none)"]
    )
    lines += ["", *_work_class_lines(stats.work_classes)]
    return "\n".join([*lines, "", *_captcha_lines(stats.captcha)])


def share_text(queue: ClassQueue) -> str:
    """What a class gets of the site while registrations wait: ``first`` (registrations),
    ``spare only`` (unverified), else its share as a percentage."""
    if queue.share is None:
        return "first"
    if queue.work_class is WorkClass.UNVERIFIED:
        return "spare only"
    return f"{queue.share * 100:.4g}%"


def _work_class_lines(classes: dict[str, ClassQueue]) -> list[str]:
    return [
        "Work classes (the site's capacity shared while registrations wait: docs/capacity.md)",
        *_rows(
            ["Class", "Waiting", "Sent last hour", "Share"],
            (
                [name, queue.waiting, queue.sent_last_hour, share_text(queue)]
                for name, queue in classes.items()
            ),
        ),
    ]


def _captcha_lines(captcha: CaptchaStats | None) -> list[str]:
    if captcha is None:
        return ["Captcha solves: no solving service configured (CENSUS_CAPTCHA)"]
    service = captcha.solving_service
    if service.state == "paused":
        state = (
            f"PAUSED since {service.since or '?'}: {service.reason or 'unavailable'}"
            f"   next probe {service.until}   failed probes {service.failed_probes}"
            " (nothing is asked of it; lookups wait, uncharged)"
        )
    else:
        state = "ok"
    lines = [
        "Captcha solves (the solving service and the token pool)",
        f"service {captcha.service or 'not set'}   pool {'on' if captcha.pool else 'off'}"
        f"   site key {'known' if service.site_key_known else 'not seen yet'}",
        f"state {state}",
    ]
    lines += _rows(
        ["Solves", "Today", "Overall"],
        (
            [_SOLVE_LABELS.get(figure, figure), captcha.today[figure], captcha.overall[figure]]
            for figure in SOLVE_FIGURES
        ),
    )
    lines.append(
        f"paid solves per lookup   today {_ratio(captcha.paid_per_lookup_today)}"
        f"   overall {_ratio(captcha.paid_per_lookup)}"
    )
    if captcha.daily_limit is not None:
        lines.append(
            f"daily limit (CENSUS_CAPTCHA_DAILY_LIMIT) {captcha.daily_limit}"
            f"   left today {captcha.daily_left}"
        )
    return lines


#: census_stats' words for the ledger's figures, where the key alone would not say it.
_SOLVE_LABELS = {
    "paid": "paid (delivered)",
    "used": "used (sent)",
    "refused": "  of them refused",
    "wasted": "wasted (paid, never sent)",
    "failed": "failed (not paid)",
    "solving": "being solved",
    "ready": "ready in the pool",
    "held": "held by an attempt",
}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _unexpected_pages(limit: int = 20) -> list[dict[str, Any]]:
    rows = PageSnapshot.objects.order_by("-last_seen_at").values(
        "signature", "count", "first_seen_at", "last_seen_at"
    )[:limit]
    return [
        {
            "signature": row["signature"],
            "count": row["count"],
            "first_seen": row["first_seen_at"].isoformat(timespec="seconds"),
            "last_seen": row["last_seen_at"].isoformat(timespec="seconds"),
        }
        for row in rows
    ]


def _paused() -> dict[str, str] | None:
    current = pause.current()
    if current is None:
        return None
    return {"since": current.since.isoformat(), "by": current.by, "reason": current.reason}
