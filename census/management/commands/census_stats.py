"""``manage.py census_stats [--json] [--late-after S]``: lookup statistics from the database."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from census.observability.stats import DEFAULT_LATE_AFTER, compute, render_table


class Command(BaseCommand):
    help = (
        "Counts by status, outcomes per attempt, error reasons, retry lateness and "
        "time-to-final percentiles of the census lookups, the breaker, each work class's "
        "queue and share, and the captcha solves with the solving service's state, as a "
        "table or JSON."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--late-after",
            type=float,
            default=DEFAULT_LATE_AFTER,
            metavar="SECONDS",
            help=f"A retry starting this long after its due time is late "
            f"(default {DEFAULT_LATE_AFTER:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stats = compute(late_after=options["late_after"])
        if options["json"]:
            self.stdout.write(json.dumps(stats.as_dict(), indent=2))
        else:
            self.stdout.write(render_table(stats))
