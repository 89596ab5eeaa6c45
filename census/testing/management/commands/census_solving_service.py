"""``manage.py census_solving_service``: serve a local captcha-solving service until Ctrl-C or
SIGTERM, then print its ledger."""

from __future__ import annotations

import json
import signal
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from census.testing.solving_service import (
    DEFAULT_API_KEY,
    DEFAULT_PRICE,
    FLAVOURS,
    Ledger,
    SolvingService,
)


class Command(BaseCommand):
    help = (
        "Serve a local captcha-solving service (the createTask/getTaskResult/getBalance JSON "
        "protocol of 2captcha, CapSolver, Anti-Captcha and CapMonster) on loopback."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
        parser.add_argument("--port", type=int, default=8766, help="0 picks a free port")
        parser.add_argument(
            "--flavour",
            choices=sorted(FLAVOURS),
            default="any",
            help="answer as this service does (default: any, which takes every task type)",
        )
        parser.add_argument(
            "--solve-seconds", type=float, default=3.0, help="seconds from task to token"
        )
        parser.add_argument("--balance", type=float, default=10.0, help="USD on the account")
        parser.add_argument(
            "--price", type=float, default=DEFAULT_PRICE, help="USD charged per solve"
        )
        parser.add_argument(
            "--key",
            action="append",
            dest="keys",
            metavar="API_KEY",
            help=f"an accepted API key (repeatable; default {DEFAULT_API_KEY})",
        )
        parser.add_argument(
            "--unsolvable-every",
            type=int,
            default=0,
            metavar="N",
            help="every Nth task is unsolvable (0: none)",
        )
        parser.add_argument("--quiet", action="store_true", help="do not print each request")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            service = SolvingService(
                host=options["host"],
                port=options["port"],
                flavour=options["flavour"],
                balance=options["balance"],
                solve_seconds=options["solve_seconds"],
                price=options["price"],
                api_keys=options["keys"] or [DEFAULT_API_KEY],
                unsolvable_every=options["unsolvable_every"],
                on_request=None if options["quiet"] else self._print_request,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # Blocked before the server's threads start, so that they inherit the block: Ctrl-C
        # and SIGTERM wait for sigwait below instead of landing in a request's thread.
        stops = {signal.SIGINT, signal.SIGTERM}
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            try:
                service.start()
            except OSError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Solving service serving {service.url}")
            self.stdout.write("Set CENSUS_CAPTCHA to (the api_key is one of --key):")
            self.stdout.write(f"    {json.dumps(service.setting())}")
            self.stdout.write("Ctrl-C stops it.")
            self.stdout.flush()
            signal.sigwait(stops)
        finally:
            service.stop()
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        self.stdout.write(f"Solving service stopped. {_summary(service.ledger())}")

    def _print_request(self, method: str, path: str, status: int, code: str) -> None:
        # Requests carry the API key in their bodies: print only the path and the outcome.
        self.stdout.write(f"{method} {path} -> {status}{f' {code}' if code else ''}")
        self.stdout.flush()


def _summary(ledger: Ledger) -> str:
    return (
        f"Tasks {ledger.created}, paid {ledger.paid} (USD {ledger.spent:.5f}), "
        f"delivered {ledger.delivered}, unsolvable {ledger.unsolvable}, tokens used "
        f"{ledger.used}, rejected {sum(ledger.rejected.values())}, balance {ledger.balance:.5f}."
    )
