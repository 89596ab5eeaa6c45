"""``manage.py census_resume``: lift the pause and queue every waiting lookup again."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from census.gate import pause
from census.maintenance import sweeper
from census.management.commands.census_pause import _login


class Command(BaseCommand):
    help = "Lift census_pause; the lookups that waited are queued again, oldest due first."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--by", default="", help="Who (default: this login).")

    def handle(self, *args: Any, **options: Any) -> None:
        was = pause.resume(by=options["by"] or _login())
        queued = sweeper.requeue_waiting()
        if was is None:
            self.stdout.write(f"census was not paused; {queued} waiting lookup(s) queued")
        else:
            self.stdout.write(
                f"census resumed (paused by {was.by} since {was.since:%Y-%m-%d %H:%M:%S %Z}); "
                f"{queued} waiting lookup(s) queued"
            )
