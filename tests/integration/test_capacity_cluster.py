"""The site's capacity shared between work classes, through a real qcluster, Chromium and the
simulator: a flood of unverified sign-ups, and a storm of refreshes with a bulk run, each
arriving first, must not hold back the members who register after them.

The evidence is the site's access log: which member's consulta came when. Counting the
consultas of other classes between a registration's arrival and the last registration's
consulta needs no wall-clock bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from census import bulk
from census.gate.shares import SharePolicy, WorkClass
from census.lookup.refresh import request_refresh
from census.models import Attempt, CedulaInfo, Status
from census.testing.simulator import AccessRecord, CensusSimulator
from tests import factories
from tests.clusters import browser_cluster, wait_until_final
from tests.evidence import assert_attempts_match_requests, key_of

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

#: Workers of the test cluster (tests/settings.py): at most this many lookups of another
#: class can be past their share check when a registration arrives.
WORKERS = 2
#: One request per second (``browser_cluster``): a 20-interval window is 20 s.
INTERVAL = 1.0
#: Small shares, so that each class's budget (2 per window) is far below what it queued.
SHARES = {"refresh": 0.1, "bulk": 0.1}


def flooder(user: Any) -> bool:
    """This test's ``CENSUS_IS_VERIFIED``: the flood's accounts (first name "flood") are not
    verified; real members are."""
    return bool(user.first_name != "flood")


def wait_for(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def consultas_of(site: CensusSimulator, numbers: list[str]) -> list[AccessRecord]:
    keys = {key_of(n) for n in numbers}
    return [r for r in site.consultas() if r.cedula_key in keys]


def others_while_registrations_waited(
    site: CensusSimulator, registered_at: float, members: list[str], others: list[str]
) -> int:
    """Consultas for ``others`` that reached the site after the members registered and
    before the last of the members' own consulta."""
    last = max(r.time for r in consultas_of(site, members))
    return sum(registered_at <= r.time <= last for r in consultas_of(site, others))


def register(prefix: str, count: int, **extra: Any) -> tuple[list[str], list[int]]:
    numbers = [factories.cedula(prefix) for _ in range(count)]
    users = [factories.member(username=n, **extra) for n in numbers]
    return numbers, [CedulaInfo.objects.get(user=u).pk for u in users]


def test_a_flood_of_unverified_signups_delays_no_verified_member(
    qcluster: Any, census_site: CensusSimulator, settings: Any
) -> None:
    """12 unverified sign-ups are queued first and are being served; 3 real members then
    register. Of the flood, only what the workers had already started reaches the site
    before the members' consultas (without the sharing, the members waited behind the whole
    queue); and the flood is not lost: every one of its lookups ends ``found`` in the spare
    capacity afterwards, each with one consulta."""
    settings.CENSUS_IS_VERIFIED = "tests.integration.test_capacity_cluster.flooder"
    flood, flood_ids = register("10", 12, first_name="flood")
    assert set(CedulaInfo.objects.values_list("work_class", flat=True)) == {"unverified"}
    cluster = browser_cluster(qcluster, census_site)
    wait_for(lambda: len(consultas_of(census_site, flood)) >= 2, 120, "the flood to be served")
    registered_at = time.time()
    members, member_ids = register("10", 3)

    infos = wait_until_final(member_ids, cluster, timeout=180)
    assert [i.status for i in infos] == [Status.FOUND] * 3
    ahead = others_while_registrations_waited(census_site, registered_at, members, flood)
    assert ahead <= WORKERS, ahead
    waited = Attempt.objects.filter(lookup_id__in=flood_ids, error__startswith="capacity:")
    assert waited.exists()

    floods = wait_until_final(flood_ids, cluster, timeout=240)
    assert [i.status for i in floods] == [Status.FOUND] * len(flood)
    assert all(i.retry_count == 0 for i in floods)  # waiting charged nothing
    assert_attempts_match_requests(census_site, [*infos, *floods])
    assert all(census_site.consulta_count(n) == 1 for n in flood)


def test_a_refresh_storm_and_a_bulk_run_keep_to_their_shares_while_registrations_wait(
    qcluster: Any, census_site: CensusSimulator, settings: Any
) -> None:
    """A leader refreshes 20 members and a bulk run of 10 starts; once they are being
    served, 4 members register. Between the registrations and the last of their consultas
    the refreshes and the bulk run each get at most their budget (2 per 20 s at a 0.1 share)
    plus what the workers had already started (without the sharing, the registrations
    waited behind the storm's queue)."""
    settings.CENSUS_REFRESH_COOLDOWN = 0
    settings.CENSUS_REFRESH_PER_HOUR = None
    leader = factories.leader()
    stormed = [factories.cedula("10") for _ in range(20)]
    stormed_ids = [
        CedulaInfo.objects.create(
            user=factories.member_without_lookup(username=n, referred_by=leader),
            status=Status.FOUND,
            finished_at=timezone.now(),
        ).pk
        for n in stormed
    ]
    backfill = [factories.member_without_lookup(username=factories.cedula("10")) for _ in range(10)]
    for info in CedulaInfo.objects.filter(pk__in=stormed_ids).select_related("user"):
        assert request_refresh(info, requested_by=leader)
    run, _ = bulk.open_run(
        bulk.Selection(user_ids=tuple(u.pk for u in backfill)),
        requested_by=leader,
        background=True,
    )
    assert run is not None
    backfilled = [u.username for u in backfill]
    # Queued before the cluster starts: the storm is ahead of the registrations in the queue.
    cluster = browser_cluster(qcluster, census_site, CENSUS_CAPACITY_SHARES=json.dumps(SHARES))
    wait_for(
        lambda: len(consultas_of(census_site, [*stormed, *backfilled])) >= 3,
        120,
        "the storm and the bulk run to be served",
    )
    registered_at = time.time()
    members, member_ids = register("10", 4)

    infos = wait_until_final(member_ids, cluster, timeout=180)
    assert [i.status for i in infos] == [Status.FOUND] * 4
    assert {i.work_class for i in infos} == {"registration"}
    policy = SharePolicy(interval=INTERVAL, shares=SHARES)
    refreshes = others_while_registrations_waited(census_site, registered_at, members, stormed)
    bulked = others_while_registrations_waited(census_site, registered_at, members, backfilled)
    assert (
        refreshes + bulked
        <= policy.budget(WorkClass.REFRESH) + policy.budget(WorkClass.BULK) + WORKERS
    ), (refreshes, bulked)
    classes = set(
        Attempt.objects.filter(lookup__user__username__in=stormed).values_list(
            "work_class", flat=True
        )
    )
    assert classes == {"refresh"}
    held = Attempt.objects.filter(error__startswith="capacity: refresh: share used")
    assert held.exists()
