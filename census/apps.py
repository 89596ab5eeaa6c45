from __future__ import annotations

from django.apps import AppConfig


class CensusConfig(AppConfig):
    name = "census"
    verbose_name = "Censo electoral"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from census import checks, signals, ticker  # noqa: F401  (registers receivers)

        signals.connect()
        ticker.connect()
