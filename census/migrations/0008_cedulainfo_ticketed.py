"""The deferral ticket, stored: ``CedulaInfo.ticketed``.

Until now the claim inferred it from the previous attempt row (``deferred``, and not for
this host's busy or slow browsers). Lookups deferred when this migration runs get the
ticket that inference would have given them, so none loses its place on the cursor.
"""

from typing import Any

from django.db import migrations, models

#: Errors of deferrals for our own slowness (census.outcomes.OWN_SLOWNESS_REASONS), which
#: hold no place on the cursor. Frozen here: a migration must not follow later code.
OWN_SLOWNESS_PREFIXES = ("browsers_busy", "browser_slow")


def give_tickets(apps: Any, schema_editor: Any) -> None:
    CedulaInfo = apps.get_model("census", "CedulaInfo")
    Attempt = apps.get_model("census", "Attempt")
    for info in CedulaInfo.objects.filter(status="retrying").only("pk", "attempt"):
        previous = (
            Attempt.objects.filter(lookup_id=info.pk, number__lt=info.attempt)
            .order_by("-number")
            .only("outcome", "error")
            .first()
        )
        if (
            previous is not None
            and previous.outcome == "deferred"
            and previous.error.split(":", 1)[0] not in OWN_SLOWNESS_PREFIXES
        ):
            CedulaInfo.objects.filter(pk=info.pk).update(ticketed=True)


class Migration(migrations.Migration):
    dependencies = [
        ("census", "0007_attempt_sent_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="cedulainfo",
            name="ticketed",
            field=models.BooleanField(
                default=False, verbose_name="con turno en la fila del bloqueo"
            ),
        ),
        migrations.RunPython(give_tickets, migrations.RunPython.noop),
    ]
