"""The docs say what the code does: the one event table (docs/observability.md, "census
events") has every ``Event`` with its level and, for the events a lookup's life emits,
exactly the fields they carry (collected from a run); the dashboard queries name fields the
log has; the task's arguments and result are named as they are.

A row's fields are the backticked names in its fields column, outside parentheses and
outside "to `status`:" phrases (those name values, not fields).
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import structlog
from django.core.exceptions import PermissionDenied
from structlog.testing import capture_logs

from census import followups, signals
from census.events import Event
from census.gate import pause
from census.logs import scrub_cedula
from census.lookup import refresh
from census.models import CedulaInfo
from census.q2.context import current_task_id
from tests import factories
from tests.driving import drive, run_and_hook
from tests.follow_up_tasks import make_records_table

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: (file, heading of the section holding the table, index of the fields column).
TABLE = (DOCS / "observability.md", "### census events", 3)
#: Bound to every line inside an attempt (``events.about``, the claimed retry count): an
#: event emitted there carries them whether or not its row names them.
CONTEXT_FIELDS = {"lookup_id", "step", "retry_count"}
_BACKTICKED = re.compile(r"`([a-z_]+)`")
_STATUS_PHRASE = re.compile(r"\bto `[a-z_]+`")


def _outside_parentheses(text: str) -> str:
    depth, kept = 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            kept.append(char)
    return "".join(kept)


def documented(path: Path, heading: str, column: int) -> dict[str, tuple[str, set[str]]]:
    """event -> (level, fields) as the table under ``heading`` in ``path`` says."""
    text = path.read_text()
    section = text[text.index(heading) :].split("\n#", 1)[0]
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        name = re.fullmatch(r"`([a-z_]+)`", cells[0]) if cells else None
        if name is None or len(cells) <= column:
            continue
        fields = _STATUS_PHRASE.sub("", _outside_parentheses(cells[column]))
        rows[name.group(1)] = (cells[1], set(_BACKTICKED.findall(fields)))
    return rows


def _broken_receiver(**kwargs: Any) -> None:
    raise ValueError("the portal's receiver is broken")


@pytest.fixture
def observed(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> dict[str, set[str]]:
    """event -> every field it carried in a run through a lookup's life: registration,
    a retry, a crash, a deferral, final answers, a duplicate delivery, refreshes (granted,
    in flight, denied), a pause, a changed result, a failing receiver, and follow-ups that
    succeed and fail."""
    make_records_table()
    settings.CENSUS_FOLLOW_UPS = {"found": ["tests.follow_up_tasks.record"]}
    settings.CENSUS_FOLLOW_UP_RETRY_DELAYS = [0]
    settings.CENSUS_REFRESH_COOLDOWN = 0  # refreshed as soon as it ends; one throttled below
    capture = django_capture_on_commit_callbacks
    seen: dict[str, set[str]] = defaultdict(set)
    processors = [structlog.contextvars.merge_contextvars, scrub_cedula]
    with capture_logs(processors=processors) as logs:
        retried = new_lookup("timeout", "raise", "found", "not_found")
        deferred = new_lookup("deferred", "not_found")
        drive(retried, capture)
        drive(deferred, capture)
        run_and_hook(retried.pk, retried.step, task_id="again")  # stale: ignored
        leader = factories.leader()
        retried.user.referred_by = leader  # CENSUS_CAN_REFRESH: the portal's referral rule
        retried.user.save(update_fields=["referred_by"])
        with capture(execute=True):
            refresh.request_refresh(retried, requested_by=leader)
        refresh.request_refresh(retried, requested_by=leader)  # in flight: skipped
        with contextlib.suppress(PermissionDenied):
            refresh.request_refresh(retried, requested_by=factories.member())
        pause.pause(by="docs", reason="a run through the docs")
        run_and_hook(retried.pk, retried.step)  # held: nothing claimed
        pause.resume(by="docs")
        signals.lookup_finished.connect(_broken_receiver)
        try:
            drive(retried, capture)  # not_found now: the result changed
        finally:
            signals.lookup_finished.disconnect(_broken_receiver)
        settings.CENSUS_FOLLOW_UPS = {"any": ["tests.follow_up_tasks.fail"]}
        ended = drive(new_lookup("found"), capture)
        ended.user.referred_by = leader
        ended.user.save(update_fields=["referred_by"])
        settings.CENSUS_REFRESH_COOLDOWN = "1h"
        with contextlib.suppress(PermissionDenied):
            refresh.request_refresh(ended, requested_by=leader)  # too soon: throttled
        for number, row in enumerate(followups.FollowUp.objects.order_by("pk")):
            current_task_id.set(f"docs{number}")
            with capture(execute=True), contextlib.suppress(followups.FollowUpFailed):
                followups.run_follow_up(row.pk)
    for entry in logs:
        seen[entry["event"]] |= set(entry) - {"event", "log_level"}
    statuses = [CedulaInfo.objects.get(pk=info.pk).status for info in (retried, deferred)]
    assert statuses == ["not_found", "not_found"]  # the run went as planned
    return seen


def test_every_event_is_in_the_table_with_its_level() -> None:
    """Each ``Event`` member has a row with its level, and there is no other row."""
    rows = documented(*TABLE)
    assert {name: level for name, (level, _) in rows.items()} == {e.value: e.level for e in Event}


@pytest.mark.django_db
def test_the_fields_in_the_table_are_the_fields_events_carry(
    observed: dict[str, set[str]],
) -> None:
    """For every event the run emitted: each field its row names was carried, and each
    field it carried is named (the attempt's bound context aside)."""
    rows = documented(*TABLE)
    assert len(observed) >= 15  # most of a lookup's life was seen
    named_but_never_carried = {
        event: sorted(rows[event][1] - fields) for event, fields in observed.items()
    }
    carried_but_not_named = {
        event: sorted(fields - CONTEXT_FIELDS - rows[event][1])
        for event, fields in observed.items()
    }
    assert {e: f for e, f in named_but_never_carried.items() if f} == {}
    assert {e: f for e, f in carried_but_not_named.items() if f} == {}


#: Fields on every line of the documented JSON log (docs/observability.md), and Datadog's
#: own ``status`` attribute.
LINE_FIELDS = {"timestamp", "level", "logger", "event", "pid", "exception", "status"}
_QUERY_FIELDS = [
    re.compile(r"\bby \(([a-z_, ]+)\)"),  # LogQL grouping
    re.compile(r"\bunwrap ([a-z_]+)"),  # LogQL values
    re.compile(r"\| ([a-z_]+) ?=~?"),  # LogQL label filters
    re.compile(r"(?:^|\band |\bor )([a-z_]+) :", re.MULTILINE),  # KQL
    re.compile(r"\(rows: ([a-z_]+)\)"),  # Kibana's split rows
    re.compile(r"@([a-z_]+)"),  # Datadog facets and measures
]


def test_the_dashboard_queries_name_fields_the_log_has() -> None:
    """Every field a query in docs/observability.md groups, filters or measures by is a
    field some census event carries (by the table) or one that every line has."""
    text = (DOCS / "observability.md").read_text()
    queries = text[text.index("## Dashboard queries") :].split("\n## ", 1)[0]
    known = set(LINE_FIELDS)
    for _, fields in documented(*TABLE).values():
        known |= fields
    used = {
        name.strip()
        for pattern in _QUERY_FIELDS
        for match in pattern.findall(queries)
        for name in match.split(",")
    }
    assert len(used) >= 10
    assert sorted(used - known) == []


@pytest.mark.django_db
def test_the_docs_name_the_tasks_arguments_and_result_as_they_are(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The diagram in docs/how-it-works.md and docs/privacy.md give ``run_attempt``'s
    parameters and the keys of its result as the code has them."""
    import inspect

    from census.lookup.attempt import run_attempt

    text = (DOCS / "how-it-works.md").read_text() + (DOCS / "privacy.md").read_text()
    diagram = re.search(r"async_task\(census\.lookup\.attempt\.run_attempt, (\w+), (\w+),", text)
    carried = re.search(r"Tasks carry `\((\w+), (\w+)\)` only", text)
    result = re.search(r"a task's result is a small dict \(((?:`\w+`(?:, )?)+)\)", text)
    assert diagram and carried and result
    parameters = list(inspect.signature(run_attempt).parameters)
    assert list(diagram.groups()) == parameters == list(carried.groups())
    info = new_lookup("found")
    current_task_id.set("readme")
    with django_capture_on_commit_callbacks(execute=True):
        summary = run_attempt(info.pk, info.step)
    assert _BACKTICKED.findall(result.group(1)) == list(summary)
