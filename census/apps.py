from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CensusConfig(AppConfig):
    name = "census"
    verbose_name = _("Electoral census")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import structlog
        from django.db.models.signals import post_migrate

        from census import bulk, checks, logs, receivers  # noqa: F401  (registers checks)
        from census.maintenance import ticker

        receivers.connect()
        ticker.connect()
        # A project that never configured structlog gets census's events in its LOGGING,
        # not structlog's own console lines beside it.
        if not structlog.is_configured():
            logs.configure_structlog(plain=True)
        # The daily re-check schedule follows CENSUS_RECHECK_AFTER after each migrate (and
        # when a qcluster worker starts: census.maintenance.ticker).
        post_migrate.connect(
            bulk.sync_recheck_schedule, sender=self, dispatch_uid="census.recheck_schedule"
        )
