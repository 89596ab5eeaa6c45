"""The demo's closing report, built from the database, the JSON log and the simulator."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Q
from django.utils import timezone

from census.models import FINAL_STATUSES, FollowUp, Status
from census.observability.stats import CensusStats
from census.testing.solving_service import Ledger
from portal.demo.progress import Row
from portal.models import Notice

STATUS_CHANGED = "lookup_status_changed"


@dataclass(frozen=True, kw_only=True)
class LogCheck:
    """Whether the JSON log holds one ``lookup_status_changed`` line per status change."""

    path: Path
    #: Events found for the demo's lookups.
    events: int
    #: Status changes the database implies: creation, then two per attempt (in and out).
    expected: int
    #: Lookups whose last logged ``to_status`` is their status in the database.
    last_matches: int
    lookups: int


def expected_changes(status: str, attempts: int) -> int:
    """Status changes of a lookup with ``attempts`` attempts, now in ``status`` (no refresh)."""
    if status == Status.SCRAPING:
        return 2 * attempts  # created, then in and out of every attempt but the running one
    return 1 + 2 * attempts


def check_log(
    path: Path, rows: Sequence[Row], attempts: dict[int, int], ids: dict[int, int]
) -> LogCheck:
    """Read ``path`` for the lookups ``ids`` (user id -> lookup id) and compare with ``rows``."""
    wanted = set(ids.values())
    events = 0
    last: dict[int, str] = {}
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if STATUS_CHANGED not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == STATUS_CHANGED and event.get("lookup_id") in wanted:
                    events += 1
                    last[event["lookup_id"]] = event.get("to_status", "")
    expected = sum(
        expected_changes(row.status, attempts.get(ids.get(row.member.user_id, -1), 0))
        for row in rows
        if row.member.user_id in ids
    )
    matches = sum(1 for row in rows if last.get(ids.get(row.member.user_id, -1)) == row.status)
    return LogCheck(
        path=path, events=events, expected=expected, last_matches=matches, lookups=len(ids)
    )


@dataclass(frozen=True, kw_only=True)
class FollowUpCheck:
    """The follow-ups (``CENSUS_FOLLOW_UPS``) census planned for the demo's lookups."""

    #: Rows per state (waiting, queued, running, succeeded, failed).
    states: dict[str, int]
    #: Dotted path -> how many of its follow-ups failed (every try used).
    failed_paths: dict[str, int]
    #: Notices ``portal.followups.notify_leader`` wrote to leaders for these lookups.
    notices: int

    @property
    def planned(self) -> int:
        return sum(self.states.values())

    def count(self, state: str) -> int:
        return self.states.get(state, 0)


def check_follow_ups(lookup_ids: Iterable[int]) -> FollowUpCheck:
    """Read the follow-up rows and leader notices of the lookups ``lookup_ids``."""
    ids = list(lookup_ids)
    rows = FollowUp.objects.filter(lookup_id__in=ids)
    return FollowUpCheck(
        states=dict(Counter(rows.values_list("state", flat=True))),
        failed_paths=dict(
            Counter(rows.filter(state=FollowUp.State.FAILED).values_list("path", flat=True))
        ),
        notices=Notice.objects.filter(lookup_id__in=ids).count(),
    )


def follow_ups_due(lookup_ids: Iterable[int]) -> int:
    """Follow-ups of these lookups a worker runs now: running, or queued and due (a retry
    scheduled for later does not count)."""
    state = FollowUp.State
    return (
        FollowUp.objects.filter(lookup_id__in=list(lookup_ids))
        .filter(Q(state=state.RUNNING) | Q(state=state.QUEUED, due_at__lte=timezone.now()))
        .count()
    )


def follow_ups_lines(check: FollowUpCheck) -> list[str]:
    """What the summary says about the follow-ups."""
    if not check.planned:
        return ["Follow-ups (CENSUS_FOLLOW_UPS): none planned."]
    state = FollowUp.State
    lines = [
        f"Follow-ups (CENSUS_FOLLOW_UPS): {check.planned} planned, "
        f"{check.count(state.SUCCEEDED)} succeeded, {check.count(state.FAILED)} failed; "
        f"{_plural(check.notices, 'leader notice')} written."
    ]
    lines += [
        f"  FAILED: {path} x{count} (the admin's lookup page can run it again)"
        for path, count in sorted(check.failed_paths.items())
    ]
    unfinished = {name: check.count(name) for name in (state.QUEUED, state.RUNNING, state.WAITING)}
    if any(unfinished.values()):
        lines.append(
            "  not run yet: "
            + ", ".join(f"{name} {count}" for name, count in unfinished.items() if count)
            + " (the next qcluster runs them)"
        )
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _counts(values: Iterable[str]) -> str:
    return ", ".join(f"{key} {count}" for key, count in sorted(Counter(values).items()))


def _retries_line(stats: CensusStats) -> str:
    late, queued = stats.retry_lateness, stats.retry_queue_lateness
    if not late.count:
        return "Retries: none."
    return (
        f"Retries: {late.count}; queued by the scheduler after their due time by median "
        f"{_seconds(queued.median)}, max {_seconds(queued.max)}; started by a worker after "
        f"it by median {_seconds(late.median)}, max {_seconds(late.max)}; "
        f"late (> {stats.late_after:g} s): {stats.late_retries}."
    )


def solves(ledger: Ledger, *, lookups: int) -> str:
    """The captcha line: what the solving service was paid for, and what it was used for."""
    per_lookup = f"{ledger.paid / lookups:.2f}" if lookups else "-"
    return (
        f"Captcha solves paid: {ledger.paid} ({per_lookup} per lookup), tokens used by the "
        f"site: {ledger.used}, paid but unused: {ledger.wasted}, unsolvable (not paid): "
        f"{ledger.unsolvable}; USD {ledger.spent:.4f} at the service's price."
    )


def render(
    *,
    rows: Sequence[Row],
    stats: CensusStats,
    log: LogCheck,
    follow_ups: FollowUpCheck,
    elapsed: float,
    consultas: int,
    closest_spacing: float | None,
    solves: str,
    settings_note: Sequence[str],
    commands: Sequence[str],
    interrupted: bool,
) -> str:
    """The summary printed when the demo ends."""
    finals = [row for row in rows if row.status in FINAL_STATUSES]
    unfinished = [row for row in rows if row.status not in FINAL_STATUSES]
    unexpected = [row for row in finals if row.status != row.member.case.expected]
    title = "Demo interrupted" if interrupted else "Demo finished"
    lines = [
        "",
        f"{title}: {_plural(len(rows), 'member')} registered, "
        f"{_plural(len(finals), 'lookup')} final, {len(unfinished)} unfinished, "
        f"in {elapsed:.0f} s.",
        "",
        "Final status:",
    ]
    by_status = Counter(row.status for row in finals)
    for status in (Status.FOUND, Status.NOT_FOUND, Status.CANCELLED, Status.ERROR):
        reasons = _counts(r.reason for r in finals if r.status == status and r.reason != status)
        lines.append(
            f"  {status.value:<10} {by_status.get(status.value, 0):>3}"
            + (f"   ({reasons})" if reasons else "")
        )
    if unfinished:
        lines += [
            f"  UNFINISHED {len(unfinished):>3}   ({_counts(r.status for r in unfinished)})",
            "  (they stay queued or scheduled in the database: the next qcluster resumes them)",
        ]
    if unexpected:
        lines.append(
            "  NOT AS EXPECTED: "
            + "; ".join(f"#{r.member.number} {r.member.case.label}: {r.status}" for r in unexpected)
        )
    else:
        lines.append(
            f"  every final lookup ended as its scenario expects ({len(finals)}/{len(rows)})"
        )

    used = ", ".join(
        f"{n} attempt{'s' if n != 1 else ''}: {count}" for n, count in stats.attempts_used.items()
    )
    total_attempts = sum(n * count for n, count in stats.attempts_used.items())
    lines += [
        "",
        f"Attempts used: {total_attempts} in all ({used} lookups).",
        f"Time to final state: median {_seconds(stats.time_to_final.median)}, "
        f"p95 {_seconds(stats.time_to_final.p95)} (from registration).",
        _retries_line(stats),
        *follow_ups_lines(follow_ups),
        f"Census requests seen by the simulator: {consultas}"
        + (
            f", the closest two {closest_spacing:.2f} s apart."
            if closest_spacing is not None
            else "."
        ),
        solves,
        "",
        *settings_note,
        "",
        f"JSON log: {log.path}",
        f"  {log.events} {STATUS_CHANGED} events for these lookups, {log.expected} status "
        f"changes in the database; last logged status matches the database for "
        f"{log.last_matches}/{log.lookups} lookups.",
        "",
        "Look further:",
        *(f"  {command}" for command in commands),
    ]
    return "\n".join(lines)
