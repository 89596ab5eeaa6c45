"""The models and their migrations agree."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


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
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("census", "0007_attempt_sent_at")], [("census", "0008_cedulainfo_ticketed")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    CedulaInfo, Attempt = old.get_model("census", "CedulaInfo"), old.get_model("census", "Attempt")
    users = get_user_model().objects
    users.bulk_create([users.model(username=f"10000000{i}") for i in range(3)])  # no receiver
    user_ids = list(users.order_by("pk").values_list("pk", flat=True))
    errors = ["breaker_open: the site blocked", "browsers_busy: 2 of 2 in use", ""]
    outcomes = ["deferred", "deferred", "timeout"]
    lookups = []
    for user_id, error, outcome in zip(user_ids, errors, outcomes, strict=True):
        info = CedulaInfo.objects.create(user_id=user_id, status="retrying", attempt=2)
        Attempt.objects.create(lookup=info, number=1, outcome=outcome, error=error)
        lookups.append(info.pk)
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("census", "CedulaInfo")
    tickets = [new.objects.get(pk=pk).ticketed for pk in lookups]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("census"))
    assert tickets == [True, False, False]
