"""``manage.py census_simulator``: serve the census site simulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from census.testing.simulator import (
    CAPTCHA_MODES,
    LAYOUT_KINDS,
    SPELL_KINDS,
    AccessRecord,
    CensusSimulator,
)


class Command(BaseCommand):
    help = "Serve a local simulator of the Registraduría's census lookup site (loopback only)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument(
            "--slow-seconds", type=float, default=120.0, help="delay of the slow scenario"
        )
        parser.add_argument(
            "--retry-after", type=int, default=10, help="Retry-After of the 429 scenario"
        )
        parser.add_argument("--access-log", default=None, help="append JSON lines to this file")
        parser.add_argument("--quiet", action="store_true", help="do not print each request")
        parser.add_argument(
            "--block-first",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="block every consulta for this long from the start (a blocking spell)",
        )
        parser.add_argument(
            "--block-kind",
            choices=sorted(SPELL_KINDS),
            default="f5",
            help="answer of that spell: the F5 page (HTTP 200), 403 or 429 (default f5)",
        )
        parser.add_argument(
            "--captcha",
            choices=CAPTCHA_MODES,
            default="challenge",
            help="challenge: an image challenge on every click, as the live site shows an "
            "automated browser (tokens come from a solving service); click: a token on the "
            "click (default challenge)",
        )
        parser.add_argument(
            "--verify-url",
            default=None,
            metavar="URL",
            help="the solving service's /siteverify, which checks the tokens it issued",
        )
        parser.add_argument(
            "--layout",
            choices=LAYOUT_KINDS,
            default=None,
            metavar="KIND",
            help=f"serve this changed layout from the start: {', '.join(LAYOUT_KINDS)}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        on_access = None if options["quiet"] else self._print_access
        try:
            simulator = CensusSimulator(
                host=options["host"],
                port=options["port"],
                slow_seconds=options["slow_seconds"],
                retry_after=options["retry_after"],
                access_log_path=options["access_log"],
                on_access=on_access,
                captcha=options["captcha"],
                token_verifier=options["verify_url"],
            )
            if options["block_first"]:
                simulator.block_for(options["block_first"], options["block_kind"])
            if options["layout"] is not None:
                simulator.change_layout(options["layout"])
            simulator.start()
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.stdout.write(f"Census simulator serving {simulator.url}")
            self.stdout.write("Set CENSUS_SITE_URL to that URL. Ctrl-C stops it.")
            if options["block_first"]:
                self.stdout.write(
                    f"Blocking every consulta ({options['block_kind']}) for the first "
                    f"{options['block_first']:g} s."
                )
            if options["layout"] is not None:
                self.stdout.write(f'Serving the changed layout "{options["layout"]}".')
            self.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            simulator.stop()
        self.stdout.write("Census simulator stopped.")

    def _print_access(self, record: AccessRecord) -> None:
        # Records carry masked cédulas only, so printing them is safe.
        status = record.status or "reset"
        who = "".join(f" {part}" for part in (record.cedula_masked, record.scenario) if part)
        layout = f" [layout {record.layout}]" if record.layout else ""
        self.stdout.write(f"{record.method} {record.path}{who} -> {status}{layout}")
        self.stdout.flush()
