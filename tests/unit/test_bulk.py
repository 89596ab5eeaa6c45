"""census_lookup and census.bulk in-process: selections, refusals, pacing, resuming, re-checks.

Django-Q2 is played by hand (tests/driving.py); tests/integration/test_bulk_cluster.py runs a
backfill through a real qcluster, Chromium and the simulator.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_q.models import Schedule
from structlog.testing import capture_logs

from census import bulk
from census.bulk import feeder as bulk_feeder
from census.bulk import runs as bulk_runs
from census.checks import check_census_settings
from census.conf import parse_duration
from census.events import Event
from census.gate.waiter import DEFAULT_NAME
from census.models import Attempt, BulkMember, BulkRun, CedulaInfo, RateGate, Status
from census.outcomes import Outcome
from census.q2 import queue
from tests import factories
from tests.driving import clear_queue, drive, queued

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _census_default_refresh_rule(settings: Any) -> None:
    """The bulk mechanics under census's own ``CENSUS_CAN_REFRESH`` (any leader, any lookup);
    the tests of the referral rule set the portal's."""
    settings.CENSUS_CAN_REFRESH = "census.lookup.refresh.can_refresh"


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("census_lookup", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def leader() -> Any:
    """A leader whose own lookup is over (it takes no place in the window)."""
    user = factories.leader()
    CedulaInfo.objects.filter(user=user).update(status=Status.FOUND, finished_at=timezone.now())
    return user


@pytest.fixture
def window(settings: Any) -> int:
    """A window of 3 lookups: 3 s of the gate at one request a second, with 3 workers (so the
    gate, not the cluster, sizes it)."""
    settings.CENSUS_RATE_LIMIT_SECONDS = 1.0
    settings.CENSUS_BULK_WINDOW_SECONDS = 3.0
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 3}
    return 3


def finished(users: list[Any], capture: Any) -> None:
    """Run the lookups of these users to their final status (Django-Q2 played by hand)."""
    for user in users:
        drive(CedulaInfo.objects.get(user=user), capture)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("90m", 5400),
        ("45s", 45),
        ("2w", 14 * 86400),
        ("600", 600),
        (" 1.5D ", 1.5 * 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    """--older-than and CENSUS_RECHECK_AFTER read s, m, h, d, w or plain seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-3d", "0", "3y", "nan", "inf", "1e999d"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything else is a ValueError naming the accepted forms."""
    with pytest.raises(ValueError, match="30d"):
        parse_duration(text)


def test_selections_combine(
    leader: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """--missing adds members without a lookup to the status/age match; a users file limits."""
    missing = [factories.member_without_lookup() for _ in range(2)]
    found = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    error = drive(new_lookup("invalid_cedula"), django_capture_on_commit_callbacks)
    old = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    CedulaInfo.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=40))
    in_flight = new_lookup("found")
    assert error.status == Status.ERROR and in_flight.status == Status.PENDING

    def pks(**kwargs: Any) -> set[int]:
        return set(bulk.Selection(**kwargs).user_pks())

    assert pks(missing=True) == {u.pk for u in missing}
    assert pks(statuses=("found",)) == {found.user_id, old.user_id, leader.pk}
    assert pks(statuses=("error",)) == {error.user_id}
    assert pks(older_than_s=30 * 86400) == {old.user_id}
    assert pks(statuses=("found",), older_than_s=30 * 86400) == {old.user_id}
    assert pks(missing=True, statuses=("error",)) == {error.user_id} | {u.pk for u in missing}
    listed = (missing[0].pk, found.user_id, in_flight.user_id)
    assert pks(user_ids=listed) == set(listed)
    assert pks(missing=True, user_ids=listed) == {missing[0].pk}


def test_a_run_starts_no_lookup_that_registration_refused(leader: Any, settings: Any) -> None:
    """CENSUS_LOOKUP_FOR applies to members without a lookup, in every selection: --missing
    and a users file leave out a superuser without a cédula; a superuser with one, and users
    who already have a lookup, stay in."""
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser(username="admin", password="x")
    boss = factories.member_without_lookup(is_superuser=True)
    member = factories.member_without_lookup()
    assert not CedulaInfo.objects.filter(user=admin).exists()

    def pks(**kwargs: Any) -> list[int]:
        return bulk.Selection(**kwargs).user_pks()

    assert pks(missing=True) == [boss.pk, member.pk]
    assert pks(user_ids=(admin.pk, member.pk, leader.pk)) == [leader.pk, member.pk]
    assert "would start 2 lookup(s)" in command("--as", leader.username, "--missing", "--dry-run")
    looked_up = factories.member()
    CedulaInfo.objects.filter(user=looked_up).update(status=Status.FOUND)
    settings.CENSUS_LOOKUP_FOR = "tests.factories.leaders_only"
    assert pks(missing=True) == []
    assert pks(statuses=("found",)) == [leader.pk, looked_up.pk]  # have a lookup: not asked


def test_users_file_takes_cedulas_and_ids(tmp_path: Path) -> None:
    """Lines hold a cédula (any separators) or a user id; blanks and # comments are skipped."""
    a, b = factories.member_without_lookup(), factories.member_without_lookup()
    dotted = f"{int(a.username):,}".replace(",", ".")
    path = tmp_path / "members.txt"
    path.write_text(f"# campaign list\n{dotted}\n\n{b.pk}  # by id\n{a.username}\n")
    assert bulk.read_users_path(path) == (a.pk, b.pk)


def test_users_file_with_unknown_lines_starts_nothing(leader: Any, tmp_path: Path) -> None:
    """One unknown line refuses the whole file, naming line numbers and no cédula."""
    known = factories.member_without_lookup()
    path = tmp_path / "members.txt"
    path.write_text(f"{known.username}\n1098765432\n")
    with pytest.raises(CommandError) as refused:
        command("--as", leader.username, "--users-file", str(path))
    assert "line(s) of the users file name no user (lines 2)" in str(refused.value)
    assert "1098765432" not in str(refused.value)
    assert not BulkRun.objects.exists() and not CedulaInfo.objects.filter(user=known).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "choose members"),
        (("--status", "pending"), "final statuses"),
        (("--older-than", "soon"), "not a duration"),
        (("--users-file", "/nonexistent/members.txt"), "cannot read the users file"),
    ],
)
def test_bad_selections_are_refused(leader: Any, args: tuple[str, ...], message: str) -> None:
    """A selection that cannot run is a clear CommandError; no run, no lookup."""
    factories.member_without_lookup()
    with pytest.raises(CommandError, match=message):
        command("--as", leader.username, *args)
    assert not BulkRun.objects.exists() and not queued()


def test_only_leaders_may_run_it() -> None:
    """A member (or no such user) is refused before anything is selected; refresh_denied."""
    member = factories.member()
    factories.member_without_lookup()
    clear_queue()
    with capture_logs() as logs, pytest.raises(CommandError, match="leader"):
        command("--as", member.username, "--missing")
    with pytest.raises(CommandError, match="names no user"):
        command("--as", "nobody", "--missing")
    assert [e["door"] for e in logs if e["event"] == Event.REFRESH_DENIED] == ["census_lookup"]
    assert not BulkRun.objects.exists() and not queued()


def test_a_lookup_the_leader_may_not_refresh_refuses_the_run(
    leader: Any, settings: Any, tmp_path: Path
) -> None:
    """Under the portal's CENSUS_CAN_REFRESH a leader's run over another leader's referral is
    refused whole (nothing selected is started, no run); their own referrals go ahead."""
    settings.CENSUS_CAN_REFRESH = "portal.leaders.can_refresh"
    other = factories.member(referred_by=factories.leader())
    own = factories.member(referred_by=leader)
    CedulaInfo.objects.filter(user__in=[other, own]).update(status=Status.FOUND)
    clear_queue()
    with capture_logs() as logs, pytest.raises(CommandError, match="CENSUS_CAN_REFRESH"):
        command("--as", leader.username, "--status", "found", "--no-wait")
    denied = [e for e in logs if e["event"] == Event.REFRESH_DENIED]
    assert [(e["door"], e["refused"]) for e in denied] == [("census_lookup", 1)]
    assert not BulkRun.objects.exists() and not queued()
    users_file = tmp_path / "own.txt"
    users_file.write_text(f"{own.pk}\n")
    assert "started run" in command(
        "--as", leader.username, "--users-file", str(users_file), "--no-wait"
    )


def test_dry_run_counts_and_prices_without_starting(leader: Any, settings: Any) -> None:
    """--dry-run says how many lookups and how long the rate limit makes them; starts none."""
    settings.CENSUS_RATE_LIMIT_SECONDS = 5.0
    for _ in range(30):
        factories.member_without_lookup()
    out = command("--as", leader.username, "--missing", "--dry-run")
    assert "would start 30 lookup(s)" in out and "at least 2 min 30 s" in out
    assert not BulkRun.objects.exists() and not queued()
    assert CedulaInfo.objects.count() == 1  # the leader's own


def test_feeding_keeps_the_queue_within_the_window(
    leader: Any, window: int, django_capture_on_commit_callbacks: Any
) -> None:
    """Each feed tops the window up: never more lookups queued than the gate serves in it."""
    clear_queue()
    members = [factories.member_without_lookup() for _ in range(7)]
    run, resumed = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None and not resumed and run.total == 7
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        first = bulk.feed(run.pk)
    assert (first.started, first.queued_before) == (3, 0)
    assert len(queued()) == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk.feed(run.pk).paused == "window_full"
    assert len(queued()) == 3
    fed = [m.user for m in BulkMember.objects.filter(run=run).exclude(fed_at=None)]
    assert fed == members[:3]  # in order
    finished(fed[:2], django_capture_on_commit_callbacks)
    clear_queue()
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk.feed(run.pk).started == 2
    requested = [e for e in logs if e["event"] == Event.REFRESH_REQUESTED]
    assert {e["requested_by"] for e in requested} == {leader.pk}
    assert CedulaInfo.objects.filter(user__in=members).count() == 5


def test_registrations_count_in_the_window(
    leader: Any, window: int, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A registration in flight takes a place in the window: the backfill feeds fewer."""
    for _ in range(5):
        factories.member_without_lookup()
    new_lookup("found"), new_lookup("found")
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk.feed(run.pk).started == 1


def test_feeding_pauses_while_the_breaker_is_open(leader: Any, window: int) -> None:
    """Nothing is fed into an open breaker (it would only be deferred)."""
    factories.member_without_lookup()
    RateGate.objects.create(name=DEFAULT_NAME, breaker_until=timezone.now() + timedelta(minutes=5))
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    assert bulk.feed(run.pk).paused == "breaker_open"
    assert not BulkMember.objects.exclude(fed_at=None).exists()


def test_lookups_in_flight_are_not_started_again(
    leader: Any, window: int, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A listed member whose lookup is running counts; nothing new is queued for it."""
    running = new_lookup("found")
    clear_queue()
    run, _ = bulk.open_run(bulk.Selection(user_ids=(running.user_id,)), requested_by=leader)
    assert run is not None
    with django_capture_on_commit_callbacks(execute=True):
        fed = bulk.feed(run.pk)
    assert (fed.started, fed.in_flight) == (0, 1) and not queued()
    running = drive(running, django_capture_on_commit_callbacks)
    assert bulk.finish_if_done(run.pk).finished  # type: ignore[union-attr]


def test_a_second_run_resumes_and_a_finished_backfill_does_nothing(
    leader: Any, window: int, django_capture_on_commit_callbacks: Any
) -> None:
    """Stopped after one window, the same command continues the same run; once done, nothing."""
    members = [factories.member_without_lookup() for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        out = command("--as", leader.username, "--missing", "--no-wait")
    assert "started run" in out
    run = BulkRun.objects.get()
    finished(members[:3], django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        out = command("--as", leader.username, "--missing", "--no-wait")
    assert f"resuming run {run.pk}" in out and "3 already fed" in out
    assert BulkRun.objects.count() == 1
    finished(members[3:], django_capture_on_commit_callbacks)
    out = command("--as", leader.username, "--missing")
    assert f"run {run.pk} finished: 5 lookup(s) final" in out
    assert command("--as", leader.username, "--missing") == (
        "nothing to do: no member matches the selection\n"
    )
    # Every member was started exactly once: one budget each.
    assert (
        sorted(CedulaInfo.objects.filter(user__in=members).values_list("budget_start", flat=True))
        == [1] * 5
    )


def test_background_run_is_fed_by_a_schedule_and_can_be_cancelled(
    leader: Any, window: int, django_capture_on_commit_callbacks: Any
) -> None:
    """--background installs census-bulk-<id>; its task feeds; --cancel stops and removes it."""
    for _ in range(5):
        factories.member_without_lookup()
    out = command("--as", leader.username, "--missing", "--background")
    run = BulkRun.objects.get()
    assert run.background and f"census-bulk-{run.pk}" in out
    feeder = Schedule.objects.get(name=queue.feeder_name(run.pk))
    assert (feeder.func, feeder.schedule_type) == (queue.FEED_FUNC, Schedule.MINUTES)
    with django_capture_on_commit_callbacks(execute=True):
        state = bulk.feed_scheduled(run.pk)
    assert state["fed"] == 3 and len(queued()) == 3
    with capture_logs() as logs:
        out = command("--as", leader.username, "--cancel")
    assert f"cancelled run(s) {run.pk}" in out
    assert not Schedule.objects.filter(name=queue.feeder_name(run.pk)).exists()
    assert Event.BULK_RUN_CANCELLED in [e["event"] for e in logs]
    clear_queue()
    assert bulk.feed(run.pk).paused == "closed" and not queued()


def test_recheck_schedule_follows_the_setting(settings: Any) -> None:
    """CENSUS_RECHECK_AFTER installs a daily schedule at CENSUS_RECHECK_HOUR; off removes it."""
    settings.CENSUS_RECHECK_AFTER = "90d"
    settings.CENSUS_RECHECK_HOUR = 4
    bulk.sync_recheck_schedule()
    recheck = Schedule.objects.get(name=queue.RECHECK_SCHEDULE)
    assert (recheck.func, recheck.schedule_type) == (queue.RECHECK_FUNC, Schedule.DAILY)
    local = timezone.localtime(recheck.next_run)
    assert (local.hour, local.minute) == (4, 0) and recheck.next_run > timezone.now()
    settings.CENSUS_RECHECK_AFTER = None
    bulk.sync_recheck_schedule()
    assert not Schedule.objects.filter(name=queue.RECHECK_SCHEDULE).exists()


def test_bad_recheck_setting_is_a_check_error(settings: Any) -> None:
    """A CENSUS_RECHECK_AFTER that is not a duration fails the system checks (census.E005)."""
    settings.CENSUS_RECHECK_AFTER = "quarterly"
    assert "census.E005" in [e.id for e in check_census_settings()]


def test_recheck_starts_a_background_run_of_old_final_lookups(
    settings: Any, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The daily task re-checks final lookups older than the setting, as a background run."""
    settings.CENSUS_RECHECK_AFTER = "90d"
    old = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    recent = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    CedulaInfo.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=91))
    result = bulk.start_recheck()
    run = BulkRun.objects.get(pk=result["run_id"])
    assert (run.kind, run.background, run.requested_by) == (BulkRun.Kind.RECHECK, True, None)
    assert list(run.members.values_list("user_id", flat=True)) == [old.user_id]
    assert Schedule.objects.filter(name=queue.feeder_name(run.pk)).exists()
    assert bulk.start_recheck() == {"run_id": run.pk, "resumed": True}
    assert recent.user_id not in run.members.values_list("user_id", flat=True)


def _recheck(info: CedulaInfo, leader: Any, capture: Any) -> tuple[CedulaInfo, list[Any]]:
    """Re-check one lookup through a bulk run; returns it final and the events logged."""
    run, _ = bulk.open_run(bulk.Selection(user_ids=(info.user_id,)), requested_by=leader)
    assert run is not None
    with capture_logs() as logs:
        with capture(execute=True):
            bulk.feed(run.pk)
        info = drive(info, capture)
    return info, logs


def test_a_changed_result_is_reported_and_the_previous_one_kept(
    leader: Any, window: int, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """found -> not_found: lookup_result_changed with the changed fields, no cédula."""
    info = drive(new_lookup("found", "not_found"), django_capture_on_commit_callbacks)
    place = info.puesto
    info, logs = _recheck(info, leader, django_capture_on_commit_callbacks)
    assert info.status == Status.NOT_FOUND
    assert info.previous_result["status"] == "found" and info.previous_result["puesto"] == place
    (changed,) = [e for e in logs if e["event"] == Event.LOOKUP_RESULT_CHANGED]
    assert changed["lookup_id"] == info.pk
    assert "status" in changed["changed"] and "puesto" in changed["changed"]
    assert changed["previous"]["status"] == "found" and changed["current"]["status"] == "not_found"
    assert info.user.username not in repr(changed)


@pytest.mark.parametrize("second", ["found", "invalid_cedula"])
def test_the_same_result_or_an_error_is_no_change(
    second: str, leader: Any, window: int, new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The same answer again, or an error (which says nothing new of the census): no event."""
    info = drive(new_lookup("found", second), django_capture_on_commit_callbacks)
    info, logs = _recheck(info, leader, django_capture_on_commit_callbacks)
    assert info.previous_result["status"] == "found"
    assert Event.LOOKUP_RESULT_CHANGED not in [e["event"] for e in logs]


def test_a_member_deleted_mid_run_does_not_keep_the_run_open(
    leader: Any, window: int, django_capture_on_commit_callbacks: Any
) -> None:
    """A user deleted before being fed leaves the run: it still finishes."""
    members = [factories.member_without_lookup() for _ in range(2)]
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    members[1].delete()
    with django_capture_on_commit_callbacks(execute=True):
        bulk.feed(run.pk)
    finished(members[:1], django_capture_on_commit_callbacks)
    state = bulk.finish_if_done(run.pk)
    assert state is not None and state.finished and (state.total, state.done) == (1, 1)


def _deferred_lookup(due_in: timedelta, outcome: str = Outcome.DEFERRED.value) -> CedulaInfo:
    """A member's lookup in ``retrying`` after an attempt with ``outcome``, due in ``due_in``."""
    info = CedulaInfo.objects.get(user=factories.member())
    Attempt.objects.create(lookup=info, step=1, outcome=outcome, finished_at=timezone.now())
    CedulaInfo.objects.filter(pk=info.pk).update(
        status=Status.RETRYING, step=2, next_attempt_at=timezone.now() + due_in
    )
    return info


def test_deferred_lookups_count_in_the_window_whatever_their_due_time(
    leader: Any, window: int
) -> None:
    """A lookup deferred by the closed gate is in flight even when due far past the window."""
    for _ in range(3):
        factories.member_without_lookup()
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    _deferred_lookup(timedelta(hours=1), outcome=Outcome.TIMEOUT.value)  # a plain retry
    assert bulk.in_flight_window() == 0
    for _ in range(window):
        _deferred_lookup(timedelta(hours=1))
    assert bulk.in_flight_window() == window
    fed = bulk.feed(run.pk)
    assert (fed.paused, fed.started) == ("window_full", 0)
    assert not BulkMember.objects.exclude(fed_at=None).exists()


def test_feeding_pauses_while_deferred_lookups_are_ahead_on_the_cursor(
    leader: Any, window: int, django_capture_on_commit_callbacks: Any
) -> None:
    """The gate's deferral cursor ahead: a member fed now would only be deferred behind it
    (and push registrations back), so nothing is fed until the cursor has passed."""
    for _ in range(3):
        factories.member_without_lookup()
    _deferred_lookup(timedelta(minutes=5))
    gate = RateGate.objects.create(
        name=DEFAULT_NAME, defer_cursor=timezone.now() + timedelta(minutes=5)
    )
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    fed = bulk.feed(run.pk)
    assert (fed.paused, fed.started, fed.queued_before) == ("deferred_ahead", 0, 1)
    assert not BulkMember.objects.exclude(fed_at=None).exists()
    RateGate.objects.filter(pk=gate.pk).update(defer_cursor=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk.feed(run.pk).started == window - 1  # the deferred lookup keeps its place


@pytest.mark.django_db(transaction=True)
def test_feeders_of_two_runs_take_turns(leader: Any, window: int, monkeypatch: Any) -> None:
    """Two runs fed at once: the second feeder waits for the first to commit and counts what
    it queued, so together they never fill the window twice. (On SQLite the write lock of
    an IMMEDIATE transaction serializes feeds anyway: this bites on PostgreSQL.)"""
    members = [factories.member_without_lookup() for _ in range(2 * window)]
    runs = []
    for part in (members[:window], members[window:]):
        run, _ = bulk.open_run(
            bulk.Selection(user_ids=tuple(u.pk for u in part)), requested_by=leader
        )
        assert run is not None
        runs.append(run)
    first_inside, release = threading.Event(), threading.Event()
    real_start = bulk_feeder.start_for_user
    first_thread: list[threading.Thread] = []

    def start_for_user(user: Any, *, requester_id: int | None) -> bool:
        started = real_start(user, requester_id=requester_id)
        if threading.current_thread() in first_thread and not first_inside.is_set():
            first_inside.set()  # the first feeder has computed the window and is filling it
            release.wait(timeout=60)
        return started

    monkeypatch.setattr(bulk_feeder, "start_for_user", start_for_user)
    results: dict[int, bulk.Feed] = {}

    def feeder(run_id: int) -> None:
        try:
            results[run_id] = bulk.feed(run_id)
        finally:
            connection.close()

    first = threading.Thread(target=feeder, args=(runs[0].pk,))
    second = threading.Thread(target=feeder, args=(runs[1].pk,))
    first_thread.append(first)
    first.start()
    try:
        assert first_inside.wait(timeout=60)
        second.start()
        second.join(timeout=3)  # time for an unserialized second feeder to fill the window
    finally:
        release.set()
        first.join(timeout=60)
        if second.ident is not None:
            second.join(timeout=60)
    assert results[runs[0].pk].started == window
    assert (results[runs[1].pk].started, results[runs[1].pk].paused) == (0, "window_full")
    assert bulk.in_flight_window() == window


def test_a_selection_has_one_open_run(leader: Any, settings: Any) -> None:
    """A second open_run of the selection resumes the open run, whichever door opened it;
    the database refuses a second open run of one selection."""
    settings.CENSUS_RECHECK_AFTER = "90d"
    old = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=old.pk).update(
        status=Status.FOUND, finished_at=timezone.now() - timedelta(days=91)
    )
    recheck = bulk.start_recheck()
    run, resumed = bulk.open_run(bulk.Selection(older_than_s=90 * 86400), requested_by=leader)
    assert run is not None and (run.pk, resumed) == (recheck["run_id"], True)
    assert BulkRun.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        BulkRun.objects.create(selection=run.selection)
    bulk.cancel([run.pk])
    BulkRun.objects.create(selection=run.selection)  # a cancelled run is no longer open


def test_racing_open_runs_of_one_selection_share_one_run(leader: Any, monkeypatch: Any) -> None:
    """Another open_run creates the run after this one looked for an open run: this one
    resumes that run instead of opening a second (its insert fails on the constraint)."""
    for _ in range(3):
        factories.member_without_lookup()
    selection = bulk.Selection(missing=True)
    real_user_pks = bulk.Selection.user_pks
    racer: list[Any] = []

    def user_pks(self: bulk.Selection, now: Any = None) -> list[int]:
        if not racer:  # between the look for an open run and the insert: the other call
            racer.append(None)
            racer[0] = bulk.open_run(selection, requested_by=leader)
        return real_user_pks(self, now)

    monkeypatch.setattr(bulk.Selection, "user_pks", user_pks)
    run, resumed = bulk.open_run(selection, requested_by=leader)
    first, first_resumed = racer[0]
    assert first is not None and not first_resumed
    assert run is not None and (run.pk, resumed) == (first.pk, True)
    assert BulkRun.objects.count() == 1 and BulkMember.objects.filter(run=first).count() == 3


def test_a_cancelled_run_stays_cancelled(
    leader: Any, window: int, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A cancel landing while finish_if_done looks: the run is not finished afterwards."""
    member = factories.member_without_lookup()
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    with django_capture_on_commit_callbacks(execute=True):
        bulk.feed(run.pk)
    finished([member], django_capture_on_commit_callbacks)
    real_progress = bulk_runs.progress
    cancelled: list[int] = []

    def progress(run: BulkRun) -> bulk.Progress:
        if not cancelled:
            cancelled.extend(bulk.cancel([run.pk]))
        return real_progress(run)

    monkeypatch.setattr(bulk_runs, "progress", progress)
    with capture_logs() as logs:
        state = bulk.finish_if_done(run.pk)
    assert cancelled == [run.pk]
    assert state is not None and state.cancelled and not state.finished
    run.refresh_from_db()
    assert run.cancelled_at is not None and run.finished_at is None
    assert Event.BULK_RUN_FINISHED not in [e["event"] for e in logs]
    assert bulk.feed(run.pk).paused == "closed"


@pytest.mark.parametrize(
    ("finished", "workers", "gate", "size"),
    [
        (0, 2, 24, 2),  # an idle cluster: one lookup per worker, so the measure can grow
        (10, 2, 24, 22),  # 10 in the last minute -> 20 in a 120 s window, plus the workers
        (100, 2, 24, 24),  # the gate binds
        (0, 0, 24, 1),  # never less than one
        (0, 50, 24, 24),  # more workers than the gate serves
    ],
)
def test_the_window_holds_what_the_cluster_finishes_in_it(
    finished: int, workers: int, gate: int, size: int
) -> None:
    """The window: the gate's capacity, or what the cluster finished lately plus a lookup
    per worker when that is fewer; never empty."""
    assert (
        bulk.window_size(
            window_s=120, gate_capacity=gate, finished=finished, lookback_s=60, workers=workers
        )
        == size
    )


def test_workers_slower_than_the_gate_get_a_smaller_window(
    leader: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Two workers that finished 3 attempts in the last minute: a 60 s window holds 3 + 2
    lookups, not the 60 the gate would serve at 1 s. Deferrals (no worker time) and
    attempts older than the lookback do not count."""
    settings.CENSUS_RATE_LIMIT_SECONDS = 1.0
    settings.CENSUS_BULK_WINDOW_SECONDS = 60.0
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    info = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=info.pk).update(status=Status.FOUND)
    now = timezone.now()
    for number, (outcome, ago) in enumerate(
        [("found", 5), ("timeout", 20), ("not_found", 50), ("deferred", 10), ("found", 90)], 1
    ):
        Attempt.objects.create(
            lookup=info, step=number, outcome=outcome, finished_at=now - timedelta(seconds=ago)
        )
    for _ in range(8):
        factories.member_without_lookup()
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    with django_capture_on_commit_callbacks(execute=True):
        fed = bulk.feed(run.pk)
    assert (fed.started, fed.capacity) == (5, 5)
