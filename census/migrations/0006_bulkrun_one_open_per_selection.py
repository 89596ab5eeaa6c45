# At most one open bulk run per selection.

from typing import Any

from django.db import migrations, models
from django.utils import timezone


def cancel_duplicate_open_runs(apps: Any, schema_editor: Any) -> None:
    """Racing census_lookup calls may have opened a selection twice: keep the oldest open
    run of each selection, cancel the others (their queued lookups finish; their feeder
    schedules remove themselves at their next run)."""
    BulkRun = apps.get_model("census", "BulkRun")
    kept: set[str] = set()
    for pk, selection in (
        BulkRun.objects.filter(finished_at=None, cancelled_at=None)
        .order_by("pk")
        .values_list("pk", "selection")
    ):
        if selection in kept:
            BulkRun.objects.filter(pk=pk).update(cancelled_at=timezone.now())
        kept.add(selection)


class Migration(migrations.Migration):
    dependencies = [
        ("census", "0005_gate_send_confirmation"),
    ]

    operations = [
        migrations.RunPython(cancel_duplicate_open_runs, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="bulkrun",
            constraint=models.UniqueConstraint(
                condition=models.Q(("cancelled_at", None), ("finished_at", None)),
                fields=("selection",),
                name="census_bulkrun_one_open_per_selection",
            ),
        ),
    ]
