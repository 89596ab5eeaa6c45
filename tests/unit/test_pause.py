"""census.gate.pause: nothing goes to the site while paused; resuming loses no lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from structlog.testing import capture_logs

from census import bulk
from census.gate import pause, rules
from census.gate.protocol import Closed, Slot
from census.gate.rules import GatePolicy, GateState
from census.maintenance import sweeper
from census.models import CedulaInfo, Status
from tests import factories
from tests.driving import clear_queue, queued, run_and_hook

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
POLICY = GatePolicy(interval=5.0)


def test_a_paused_gate_admits_nothing_and_lets_nothing_leave() -> None:
    """admit refuses (reason "paused"), and a slot admitted before the pause may not go,
    not even the breaker's probe."""
    paused = GateState(next_allowed_at=T0 - timedelta(seconds=30), paused_at=T0)
    admission, after = rules.admit(paused, T0, POLICY, deadline=None)
    assert isinstance(admission, Closed) and admission.reason == "paused"
    assert after == paused  # nothing reserved
    for probe in (False, True):
        permission, _ = rules.permit(paused, T0, POLICY, Slot(T0, probe=probe), deadline=None)
        assert isinstance(permission, Closed) and permission.reason == "paused"
    running = GateState(next_allowed_at=T0 - timedelta(seconds=30))
    assert isinstance(rules.admit(running, T0, POLICY, deadline=None)[0], Slot)


@pytest.mark.django_db
def test_a_task_started_while_paused_claims_and_sends_nothing(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The lookup stays pending with its budget whole, and no attempt row is written."""
    info = new_lookup("found")
    pause.pause(by="ops", reason="legal notice")
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        run_and_hook(info.pk, info.step)
    info.refresh_from_db()
    assert (info.status, info.step, info.retry_count) == (Status.PENDING, 1, 0)
    assert not info.attempts.exists()
    assert [e["reason"] for e in logs if e["event"] == "attempt_held"] == ["paused"]


@pytest.mark.django_db
def test_the_sweeper_waits_and_resume_queues_every_waiting_lookup_oldest_first(
    new_lookup: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """While paused the stalled pass queues nothing; resume queues each waiting lookup once,
    in the order they became due."""
    first, second = new_lookup("found"), new_lookup("found")
    pause.pause(by="ops")
    clear_queue()  # their tasks ran while paused and were held
    later = datetime.now(UTC) + timedelta(hours=1)
    assert sweeper.sweep_stalled(later) == 0
    assert queued() == []
    assert pause.resume(by="ops") is not None
    assert pause.resume(by="ops") is None  # not paused any more
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeper.requeue_waiting() == 2
        assert sweeper.requeue_waiting() == 0  # queued already: nothing twice
    assert [t["name"] for t in queued()] == [
        f"census-lookup-{first.pk}-step-1",
        f"census-lookup-{second.pk}-step-1",
    ]


@pytest.mark.django_db
def test_bulk_runs_stop_feeding_while_paused(settings: Any) -> None:
    """A feeder finds the pause and starts no member."""
    leader = factories.leader()
    CedulaInfo.objects.filter(user=leader).update(status=Status.FOUND)
    factories.member_without_lookup()
    run, _ = bulk.open_run(bulk.Selection(missing=True), requested_by=leader)
    assert run is not None
    pause.pause(by="ops")
    assert bulk.feed(run.pk).paused == "paused"
    assert run.members.exclude(fed_at=None).count() == 0


@pytest.mark.django_db
def test_the_commands_and_census_stats_show_who_paused_and_why() -> None:
    """census_pause records who and why, census_stats shows it, census_resume clears it."""
    out = StringIO()
    call_command("census_pause", "--reason", "captcha budget spent", "--by", "ana", stdout=out)
    assert "census paused" in out.getvalue() and "ana" in out.getvalue()
    table = StringIO()
    call_command("census_stats", stdout=table)
    assert "PAUSED since" in table.getvalue() and "by ana: captcha budget spent" in table.getvalue()
    data = StringIO()
    call_command("census_stats", "--json", stdout=data)
    assert '"reason": "captcha budget spent"' in data.getvalue()
    out = StringIO()
    call_command("census_resume", "--by", "ana", stdout=out)
    assert "census resumed (paused by ana" in out.getvalue()
    assert pause.current() is None


@pytest.mark.django_db
def test_an_operator_pauses_and_resumes_from_the_admin(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Staff with change_rategate get the two actions; others are not offered them."""
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    from census.gate.waiter import DEFAULT_NAME
    from census.models import RateGate

    RateGate.objects.create(name=DEFAULT_NAME, next_allowed_at=datetime.now(UTC))
    url = reverse("admin:census_rategate_changelist")
    viewer = factories.member(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_rategate"))
    client.force_login(viewer)
    assert "pause_traffic" not in client.get(url).content.decode()
    client.post(url, {"action": "pause_traffic", "_selected_action": [DEFAULT_NAME]})
    assert pause.current() is None

    operator = factories.member(is_staff=True)
    for codename in ("view_rategate", "change_rategate"):
        operator.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(operator)
    client.post(url, {"action": "pause_traffic", "_selected_action": [DEFAULT_NAME]})
    paused = pause.current()
    assert paused is not None and paused.by == operator.username
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"action": "resume_traffic", "_selected_action": [DEFAULT_NAME]})
    assert pause.current() is None


@pytest.mark.django_db
def test_the_metrics_show_the_pause(client: Any, settings: Any) -> None:
    """census_paused is 1 while paused and 0 after."""
    from tests.unit.test_metrics import URL, samples

    settings.CENSUS_METRICS_TOKEN = "t"

    def paused() -> float:
        text = client.get(URL, headers={"Authorization": "Bearer t"}).content.decode()
        return samples(text)[("census_paused", ())]

    assert paused() == 0
    pause.pause(by="ops")
    assert paused() == 1
