"""Follow-up chains under real faults, in real qcluster processes (both passes): workers
SIGKILLed during follow-ups, a queued follow-up task deleted (on Redis: a lost message), an
enqueue that fails at commit, and on PostgreSQL every connection cut every few seconds.
Every follow-up's side effect is counted in the table its task writes."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from census.models import CedulaInfo, FollowUp, Status
from census.q2.context import current_task_id
from tests import factories
from tests.clusters import ClusterProcess, ConnectionCutter, register
from tests.driving import clear_queue, run_and_hook
from tests.follow_up_tasks import RECORDS, make_records_table, records

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHAIN = {"any": ["tests.follow_up_tasks.slow", "tests.follow_up_tasks.second"]}
MEMBERS = 10
KILLS = 2


def wait_for_chains(lookup_ids: list[int], cluster: ClusterProcess, timeout: float) -> None:
    """Poll until every lookup's chain has succeeded, link by link."""
    expected = len(lookup_ids) * len(CHAIN["any"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = FollowUp.objects.filter(lookup_id__in=lookup_ids, state="succeeded").count()
        if done == expected:
            return
        time.sleep(0.3)
    states = list(FollowUp.objects.values_list("lookup_id", "position", "state", "tries"))
    raise AssertionError(f"chains not done after {timeout}s: {states}\n{cluster.output()[-3000:]}")


def finish_in_process(number: str) -> int:
    """Register a member and run its lookup here, so its first follow-up is queued by
    this process (which a test may then lose)."""
    [lookup_id] = register([number])
    info = CedulaInfo.objects.get(pk=lookup_id)
    current_task_id.set(f"here-{lookup_id}")
    run_and_hook(info.pk, info.step)
    assert CedulaInfo.objects.get(pk=lookup_id).status == Status.FOUND
    return lookup_id


def test_killed_workers_a_deleted_task_and_a_failed_enqueue_run_each_follow_up_once(
    qcluster: Any, settings: Any, monkeypatch: Any
) -> None:
    """Each follow-up's side effect is recorded exactly once, in chain order."""
    make_records_table()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RECORDS}")
    settings.CENSUS_FOLLOW_UPS = CHAIN
    deleted = finish_in_process(factories.cedula("10"))
    clear_queue()  # the first follow-up's task is gone (and the stale lookup task)

    def broker_down(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("broker down")

    monkeypatch.setattr("census.q2.queue.enqueue_follow_up", broker_down)
    refused = finish_in_process(factories.cedula("10"))
    monkeypatch.undo()
    clear_queue()
    assert FollowUp.objects.filter(state="queued").count() == 2  # nothing will run them

    cluster = qcluster(
        CENSUS_TEST_FOLLOW_UPS_JSON=json.dumps(CHAIN),
        CENSUS_FOLLOW_UP_TIMEOUT="5",
        CENSUS_FOLLOW_UP_RETRY_DELAYS="1,1,1,1",
        CENSUS_RATE_LIMIT_SECONDS="0.2",
        # On the ORM broker a task its killed worker had taken before the run started comes
        # back when the broker redelivers it: after retry, 30 s here (follow-ups take 1 s).
        CENSUS_Q_RETRY="30",
    )
    ids = [deleted, refused, *register([factories.cedula("10") for _ in range(MEMBERS)])]
    drops = (
        ConnectionCutter(every=4, times=5).start() if connection.vendor == "postgresql" else None
    )
    kills = 0
    deadline = time.monotonic() + 120
    while kills < KILLS and time.monotonic() < deadline:
        busy = cluster.busy_workers(prefix="census-followup")
        if busy:
            busy[0].send_signal(signal.SIGKILL)
            kills += 1
            time.sleep(1.5)
        time.sleep(0.1)
    assert kills == KILLS
    wait_for_chains(ids, cluster, timeout=300)
    if drops is not None:
        drops.stop()

    expected = {f.key: f for f in FollowUp.objects.filter(lookup_id__in=ids)}
    written = [key for _, key, _ in records()]
    twice = {key for key in written if written.count(key) > 1}
    lost = set(expected) - set(written)
    tries = FollowUp.objects.filter(lookup_id__in=ids).aggregate(n=Sum("tries"))["n"]
    events = cluster.events()
    resumed = [e for e in events if e["event"] == "follow_up_resumed"]
    print(
        f"\nfollow-ups expected {len(expected)}, recorded {len(set(written))}, "
        f"run twice {len(twice)}, lost {len(lost)}; tries {tries}, kills {kills}, "
        f"resumed {len(resumed)} ({sorted(e['reason'] for e in resumed)}), "
        f"connections cut {sum(drops.cut if drops else [])}"
    )
    assert (len(expected), twice, lost) == (len(ids) * 2, set(), set())
    assert sorted(written) == sorted(expected)
    for lookup_id in ids:  # in order: the second link started after the first succeeded
        first, second = FollowUp.objects.filter(lookup_id=lookup_id).order_by("position")
        assert first.finished_at is not None and second.started_at is not None
        assert second.started_at >= first.finished_at
    resumed_ids = {e["lookup_id"] for e in resumed}
    assert {deleted, refused} <= resumed_ids  # the lost tasks came back through the sweeper
    assert tries >= len(expected) + 1  # a killed run counted its try
    assert not any(
        n in json.dumps(events) for n in CedulaInfo.objects.values_list("user__username", flat=True)
    )
