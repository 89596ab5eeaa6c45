"""One name per counter: ``step`` (which step of the lookup) and ``budget_try`` (which request
to the site within this budget).

``CedulaInfo.attempt`` and ``Attempt.number`` become ``step``, values kept. ``retry_count``
(retries scheduled, 0-based) becomes ``budget_try`` (1-based): every row moves up by one, so
a lookup on its second request reads 2, as its log lines do.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import F


def to_tries(apps: Any, schema_editor: Any) -> None:
    apps.get_model("census", "CedulaInfo").objects.update(budget_try=F("budget_try") + 1)


def to_retries(apps: Any, schema_editor: Any) -> None:
    apps.get_model("census", "CedulaInfo").objects.update(budget_try=F("budget_try") - 1)


class Migration(migrations.Migration):
    dependencies = [
        ("census", "0009_english_msgids"),
    ]

    operations = [
        migrations.RenameField("cedulainfo", "attempt", "step"),
        migrations.AlterField(
            model_name="cedulainfo",
            name="step",
            field=models.PositiveIntegerField(default=1, verbose_name="current step"),
        ),
        migrations.RenameField("cedulainfo", "retry_count", "budget_try"),
        migrations.RunPython(to_tries, to_retries),
        migrations.AlterField(
            model_name="cedulainfo",
            name="budget_try",
            field=models.PositiveSmallIntegerField(default=1, verbose_name="try of the budget"),
        ),
        migrations.AlterField(
            model_name="cedulainfo",
            name="budget_start",
            field=models.PositiveIntegerField(default=1, verbose_name="first step of the budget"),
        ),
        migrations.RemoveConstraint(model_name="attempt", name="census_attempt_unique"),
        migrations.RenameField("attempt", "number", "step"),
        migrations.AlterField(
            model_name="attempt",
            name="step",
            field=models.PositiveIntegerField(verbose_name="step"),
        ),
        migrations.AlterModelOptions(
            name="attempt",
            options={
                "ordering": ["lookup", "step"],
                "verbose_name": "attempt",
                "verbose_name_plural": "attempts",
            },
        ),
        migrations.AddConstraint(
            model_name="attempt",
            constraint=models.UniqueConstraint(
                fields=("lookup", "step"), name="census_attempt_unique"
            ),
        ),
    ]
