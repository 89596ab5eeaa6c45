"""The models and their migrations agree, and data migrations keep what rows held."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command


def migrate_to(name: str | None) -> Any:
    """Migrate census to ``name`` (None: the latest); the historical apps at that state."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    target = [("census", name)] if name else executor.loader.graph.leaf_nodes("census")
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def user_ids(count: int, prefix: str) -> list[int]:
    """``count`` users made in bulk, so no receiver gives them a lookup of today's shape."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    users.bulk_create([users.model(username=f"{prefix}{i}") for i in range(count)])
    return list(
        users.filter(username__startswith=prefix).order_by("pk").values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration() -> None:
    """makemigrations --check finds nothing to write for census."""
    out = StringIO()
    call_command("makemigrations", "census", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_lookups_deferred_before_the_upgrade_keep_their_ticket() -> None:
    """0008 stores the deferral ticket the claim used to infer: a lookup waiting on the
    gate's cursor keeps its place, one waiting for this host's browsers gets none."""
    old = migrate_to("0007_attempt_sent_at")
    CedulaInfo, Attempt = old.get_model("census", "CedulaInfo"), old.get_model("census", "Attempt")
    errors = ["breaker_open: the site blocked", "browsers_busy: 2 of 2 in use", ""]
    outcomes = ["deferred", "deferred", "timeout"]
    lookups = []
    for user_id, error, outcome in zip(user_ids(3, "10000000"), errors, outcomes, strict=True):
        info = CedulaInfo.objects.create(user_id=user_id, status="retrying", attempt=2)
        Attempt.objects.create(lookup=info, number=1, outcome=outcome, error=error)
        lookups.append(info.pk)
    new = migrate_to("0008_cedulainfo_ticketed").get_model("census", "CedulaInfo")
    tickets = [new.objects.get(pk=pk).ticketed for pk in lookups]
    migrate_to(None)
    assert tickets == [True, False, False]


@pytest.mark.django_db(transaction=True)
def test_the_counters_rename_keeps_every_lookups_place() -> None:
    """0010 renames the counters: ``attempt`` and ``Attempt.number`` become ``step`` with their
    values, and ``retry_count`` (0-based) becomes ``budget_try`` (1-based), each one up."""
    old = migrate_to("0009_english_msgids")
    CedulaInfo, Attempt = old.get_model("census", "CedulaInfo"), old.get_model("census", "Attempt")
    first, second = user_ids(2, "20000000")
    fresh = CedulaInfo.objects.create(user_id=first, status="pending", attempt=1, retry_count=0)
    deep = CedulaInfo.objects.create(user_id=second, status="retrying", attempt=7, retry_count=1)
    Attempt.objects.create(lookup=deep, number=6, outcome="deferred")
    new = migrate_to("0010_steps_and_budget_tries")
    lookups, rows = new.get_model("census", "CedulaInfo"), new.get_model("census", "Attempt")
    counters = [
        lookups.objects.values_list("step", "budget_try").get(pk=pk) for pk in (fresh.pk, deep.pk)
    ]
    steps = list(rows.objects.filter(lookup_id=deep.pk).values_list("step", flat=True))
    migrate_to(None)
    assert counters == [(1, 1), (7, 2)]
    assert steps == [6]


@pytest.mark.django_db(transaction=True)
def test_retry_count_comes_back_with_every_lookups_value() -> None:
    """0014 restores the design card's ``retry_count`` (retries within the budget, from 0):
    ``budget_try`` 1, 2, 3 become 0, 1, 2, and going back gives 1, 2, 3 again."""
    old = migrate_to("0013_site_changes")
    CedulaInfo = old.get_model("census", "CedulaInfo")
    ids = [
        CedulaInfo.objects.create(user_id=user_id, status="retrying", step=9, budget_try=n).pk
        for user_id, n in zip(user_ids(3, "30000000"), (1, 2, 3), strict=True)
    ]
    new = migrate_to("0014_retry_count").get_model("census", "CedulaInfo")
    restored = [new.objects.values_list("step", "retry_count").get(pk=pk) for pk in ids]
    back = migrate_to("0013_site_changes").get_model("census", "CedulaInfo")
    undone = [back.objects.get(pk=pk).budget_try for pk in ids]
    migrate_to(None)
    assert restored == [(9, 0), (9, 1), (9, 2)]
    assert undone == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_coddivipol_and_the_answer_reasons_come_and_go() -> None:
    """0015 adds ``coddivipol`` (empty on every lookup until its next answer) and the answer
    reasons; going back drops the code and turns each reason into its lookup's status, the
    only reasons the older code knows."""
    old = migrate_to("0014_retry_count").get_model("census", "CedulaInfo")
    first, second, third = user_ids(3, "40000000")
    found = old.objects.create(user_id=first, status="found", final_reason="found", mesa="3")
    new = migrate_to("0015_coddivipol_and_answer_reasons").get_model("census", "CedulaInfo")
    kept = new.objects.values_list("coddivipol", "mesa", "final_reason").get(pk=found.pk)
    new.objects.filter(pk=found.pk).update(coddivipol="160010101")
    suspended = new.objects.create(
        user_id=second, status="cancelled", final_reason="rights_suspended"
    )
    pending = new.objects.create(user_id=third, status="not_found", final_reason="pending_request")
    back = migrate_to("0014_retry_count").get_model("census", "CedulaInfo")
    reasons = [back.objects.get(pk=i.pk).final_reason for i in (found, suspended, pending)]
    columns = {field.name for field in back._meta.get_fields()}
    migrate_to(None)
    assert kept == ("", "3", "found")
    assert reasons == ["found", "cancelled", "not_found"]
    assert "coddivipol" not in columns
