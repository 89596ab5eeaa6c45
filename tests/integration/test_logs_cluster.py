"""No full cédula anywhere after a real run whose portal code echoes it: a real qcluster with
the example portal's logging (JSON file and console), follow-ups that log the member's
cédula and raise with it, and a scraper crash whose message carries it. Scanned: every line
of the JSON log, the cluster's console output, and every row of every table but the users'."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings as django_settings

from census.cedula import scrub
from census.models import CedulaInfo, FollowUp, Status
from tests import factories
from tests.clusters import ClusterProcess, register, wait_until_final

# What is logged does not depend on the database or the broker.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.any_database]

CHAIN = {"any": ["tests.follow_up_tasks.crm_rejects"]}
MEMBERS = 3


def echoes(text: str, cedulas: list[str]) -> list[str]:
    """The cédulas that ``text`` writes in full, in any form ``scrub`` knows."""
    return [cedula for cedula in cedulas if scrub(text, cedula) != text]


def wait_for_failed_follow_ups(lookup_ids: list[int], cluster: ClusterProcess) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = FollowUp.objects.filter(lookup_id__in=lookup_ids)
        if rows.count() == len(lookup_ids) and all(r.state == "failed" for r in rows):
            return
        time.sleep(0.2)
    states = list(FollowUp.objects.values_list("lookup_id", "state", "tries"))
    raise AssertionError(f"follow-ups not failed: {states}\n{cluster.output()[-3000:]}")


def table_rows_with_echoes(cedulas: list[str]) -> list[str]:
    """``model pk field`` for every stored value (pickles decoded) that writes a cédula."""
    user_model = apps.get_model(django_settings.AUTH_USER_MODEL)
    found = []
    for model in apps.get_models():
        if model is user_model:
            continue  # the one table that holds the cédula, by design
        for row in model._default_manager.all():
            for field in model._meta.concrete_fields:
                if echoes(str(getattr(row, field.attname)), cedulas):
                    found.append(f"{model._meta.label} {row.pk} {field.name}")
    return found


def test_a_run_with_failing_follow_ups_leaves_no_full_cedula(qcluster: Any) -> None:
    """Follow-ups fail twice each, a scrape crashes once: the log shows masks only."""
    crashing = factories.cedula("10")
    cluster = qcluster(
        script={crashing: ["raise", "found"]},
        CENSUS_TEST_PORTAL_LOGGING="1",
        CENSUS_TEST_FOLLOW_UPS_JSON=json.dumps(CHAIN),
        CENSUS_FOLLOW_UP_RETRY_DELAYS="0.5",
    )
    cedulas = [crashing, *(factories.cedula("10") for _ in range(MEMBERS - 1))]
    ids = register(cedulas)
    infos = wait_until_final(ids, cluster, timeout=90)
    assert [i.status for i in infos] == [Status.FOUND] * MEMBERS
    wait_for_failed_follow_ups(ids, cluster)
    cluster.stop()  # every line written

    lines = cluster.log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    # The run did what the scan is about: 2 tries of each follow-up failed, each logged by
    # census with its traceback, by the portal's CRM client and by Django-Q2; one crash.
    assert names.count("follow_up_failed") == 2 * MEMBERS
    assert all(
        "RuntimeError: CRM rejected member *" in e["exception"]
        for e in events
        if e["event"] == "follow_up_failed"
    )
    assert sum(n.startswith("CRM refused *") for n in names) == 2 * MEMBERS
    assert sum(n.startswith("Failed 'census.followups.run_follow_up'") for n in names) == (
        2 * MEMBERS
    )
    assert names.count("attempt_crashed") == 1
    assert [line for line in lines if echoes(line, cedulas)] == []
    output = cluster.output()
    assert "CRM refused" in output
    assert [line for line in output.splitlines() if echoes(line, cedulas)] == []
    assert CedulaInfo.objects.filter(pk__in=ids).count() == MEMBERS
    assert table_rows_with_echoes(cedulas) == []
    print(
        f"\nSCRUB {len(lines)} JSON log lines, {len(output.splitlines())} output lines, "
        f"{len(apps.get_models()) - 1} tables: 0 full cédulas"
    )
