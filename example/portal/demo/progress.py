"""The demo's live view of its lookups: a redrawn table on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from django.db.models import F
from django.utils import timezone

from census.cedula import mask
from census.models import Attempt, CedulaInfo, Status
from census.outcomes import Outcome
from portal.demo.mix import Case


@dataclass(frozen=True, kw_only=True)
class Tracked:
    """A member the demo registered."""

    number: int
    user_id: int
    cedula: str
    case: Case


@dataclass(frozen=True, kw_only=True)
class Row:
    """What the table shows of one lookup at one moment."""

    member: Tracked
    status: str
    #: Retries made within the current budget (``CedulaInfo.retry_count``); None before the
    #: lookup exists.
    retry_count: int | None
    next_attempt_at: datetime | None
    reason: str

    @property
    def final(self) -> bool:
        return self.status in {s.value for s in Status if s.is_final}


def snapshot(members: Sequence[Tracked]) -> list[Row]:
    """The current state of every tracked member's lookup, in registration order."""
    infos = {
        info.user_id: info
        for info in CedulaInfo.objects.filter(user_id__in=[m.user_id for m in members])
    }
    # Lookups back in RETRYING because their last attempt was deferred: why they wait.
    waiting = dict(
        Attempt.objects.filter(
            lookup__in=infos.values(),
            lookup__status=Status.RETRYING,
            step=F("lookup__step") - 1,
            outcome=Outcome.DEFERRED.value,
        ).values_list("lookup_id", "error")
    )
    rows = []
    for member in members:
        info = infos.get(member.user_id)
        reason = info.final_reason if info else ""
        if info is not None and info.pk in waiting:
            reason = f"waiting: {_WAITS.get(waiting[info.pk].split(':', 1)[0], _BLOCKED)}"
        rows.append(
            Row(
                member=member,
                status=info.status if info else "-",
                retry_count=info.retry_count if info else None,
                next_attempt_at=info.next_attempt_at if info else None,
                reason=reason,
            )
        )
    return rows


_BLOCKED = "the site blocks, nothing sent"
#: Why a deferred lookup waits, by its detail's first word; the gate's reasons say "blocks".
_WAITS = {
    "captcha_token": "a captcha token is being solved, nothing sent",
    "captcha_service": "the solving service cannot serve, nothing sent",
    "browsers_busy": "this host's browsers are busy, nothing sent",
    "browser_slow": "this host was too slow, nothing sent",
    "site_changed": "the site's pages changed, nothing sent",
    "paused": "census is paused",
}


def _next(row: Row, now: datetime) -> str:
    if row.status != Status.RETRYING or row.next_attempt_at is None:
        return ""
    local = timezone.localtime(row.next_attempt_at)
    wait = (row.next_attempt_at - now).total_seconds()
    return f"{local:%H:%M:%S} (in {wait:.0f}s)" if wait >= 0 else f"{local:%H:%M:%S} (due)"


_HEADER = ("#", "cédula", "scenario", "status", "retries", "next retry", "reason")


def table_lines(rows: Sequence[Row], now: datetime) -> list[str]:
    """The progress table, one string per line."""
    cells = [_HEADER] + [
        (
            str(row.member.number),
            mask(row.member.cedula),
            row.member.case.label,
            row.status,
            "" if row.retry_count is None else str(row.retry_count),
            _next(row, now),
            row.reason,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_HEADER))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]


class LiveTable:
    """Redraws the table in place (ANSI cursor movement); fits it to the terminal's height."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.height = 0

    def update(self, heading: str, rows: Sequence[Row], now: datetime) -> None:
        lines = [heading, *table_lines(rows, now)]
        room = shutil.get_terminal_size((100, 40)).lines - 2
        if len(lines) > room:
            # Keep the lookups still running in view; finished ones make room first.
            running = [row for row in rows if not row.final]
            shown = running[: max(room - 3, 1)]
            lines = [heading, *table_lines(shown, now)]
            lines.append(f"... and {len(rows) - len(shown)} more (finished ones hidden)")
        if self.height:
            self.out.write(f"\x1b[{self.height}F")  # back to the table's first line
        self.out.write("".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        self.out.flush()
        self.height = len(lines)


class LineLog:
    """One line per change of a lookup's status or try: for logs, CI and pipes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.seen: dict[int, tuple[str, int | None, str]] = {}

    def update(self, heading: str, rows: Sequence[Row], now: datetime) -> None:
        for row in rows:
            state = (row.status, row.retry_count, row.reason)
            if self.seen.get(row.member.user_id) == state:
                continue
            self.seen[row.member.user_id] = state
            extra = f" next retry {_next(row, now)}" if row.status == Status.RETRYING else ""
            extra += f" reason {row.reason}" if row.final and row.reason else ""
            extra += f" ({row.reason})" if not row.final and row.reason else ""
            self.out.write(
                f"{timezone.localtime(now):%H:%M:%S} #{row.member.number} "
                f"{mask(row.member.cedula)} [{row.member.case.label}] "
                f"{row.status} (retries {row.retry_count or 0}){extra}\n"
            )
        self.out.flush()
