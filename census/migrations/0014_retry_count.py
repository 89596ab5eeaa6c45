"""The design card's ``retry_count`` again: retries made within the budget, counted from 0.

Migration 0010 turned it into ``budget_try`` (1-based). ``retry_count`` is the public contract
(portals and reports query it), so it comes back under its name and every row moves down by
one: a lookup on its second request to the site reads 1, as it did before 0010.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import F


def to_retries(apps: Any, schema_editor: Any) -> None:
    apps.get_model("census", "CedulaInfo").objects.filter(retry_count__gt=0).update(
        retry_count=F("retry_count") - 1
    )


def to_tries(apps: Any, schema_editor: Any) -> None:
    apps.get_model("census", "CedulaInfo").objects.update(retry_count=F("retry_count") + 1)


class Migration(migrations.Migration):
    dependencies = [
        ("census", "0013_site_changes"),
    ]

    operations = [
        migrations.RenameField("cedulainfo", "budget_try", "retry_count"),
        migrations.RunPython(to_retries, to_tries),
        migrations.AlterField(
            model_name="cedulainfo",
            name="retry_count",
            field=models.PositiveSmallIntegerField(default=0, verbose_name="retries"),
        ),
    ]
