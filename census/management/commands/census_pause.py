"""``manage.py census_pause [--reason TEXT]``: stop all census traffic, losing nothing."""

from __future__ import annotations

import getpass
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from census.gate import pause


class Command(BaseCommand):
    help = (
        "Stop every request to the census site, on every cluster, within a second. "
        "Registrations still create their lookups; nothing is sent or charged until "
        "census_resume."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--reason", default="", help="Why (shown by census_stats).")
        parser.add_argument("--by", default="", help="Who (default: this login).")

    def handle(self, *args: Any, **options: Any) -> None:
        paused = pause.pause(by=options["by"] or _login(), reason=options["reason"])
        self.stdout.write(f"census paused since {paused.since:%Y-%m-%d %H:%M:%S %Z} by {paused.by}")


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment (a container)
        return "?"
