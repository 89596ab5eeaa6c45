"""The answers as the live site words them: ``coddivipol`` kept, and the answer reasons.

``CedulaInfo.coddivipol`` holds the polling place's DIVIPOL code when a found answer carries
one (empty on every lookup until its next answer). ``final_reason`` may also hold what an
answer's wording says beyond its status (``rights_suspended``, ``not_enabled``,
``pending_request``: ``census.outcomes.AnswerReason``). Going back, those reasons become
their status again (``cancelled``, ``not_found``), the only reasons the older code knows.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import F

#: The answer reasons of this migration, frozen here (the app's vocabulary may grow).
ANSWER_REASONS = ("rights_suspended", "not_enabled", "pending_request")


def reasons_to_statuses(apps: Any, schema_editor: Any) -> None:
    apps.get_model("census", "CedulaInfo").objects.filter(
        final_reason__in=ANSWER_REASONS
    ).update(final_reason=F("status"))


class Migration(migrations.Migration):
    dependencies = [
        ("census", "0014_retry_count"),
    ]

    operations = [
        migrations.AddField(
            model_name="cedulainfo",
            name="coddivipol",
            field=models.CharField(
                blank=True, max_length=20, verbose_name="polling place code"
            ),
        ),
        migrations.AlterField(
            model_name="cedulainfo",
            name="final_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("found", "Found"),
                    ("not_found", "Not found"),
                    ("cancelled", "Cancelled"),
                    ("invalid_cedula", "Invalid cédula"),
                    ("missing_cedula", "No cédula"),
                    ("timeout", "Timed out"),
                    ("connection_error", "Connection error"),
                    ("captcha_failed", "Captcha failed"),
                    ("blocked", "Blocked by the site"),
                    ("unexpected_page", "Unexpected page"),
                    ("task_failed", "Task failed"),
                    ("lost", "Lost"),
                    ("deferred", "Deferred"),
                    ("rights_suspended", "Political rights lost or suspended"),
                    ("not_enabled", "Not enabled to vote"),
                    ("pending_request", "Request in process"),
                ],
                max_length=32,
                verbose_name="final reason",
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, reasons_to_statuses),
    ]
