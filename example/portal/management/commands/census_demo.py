"""``manage.py census_demo``: members register, a real qcluster looks them up, you watch.

Starts the census site simulator and the local captcha-solving service (in this process;
the simulator shows every browser the live site's image challenge, the service solves it in
a few seconds) and ``manage.py qcluster`` (2 workers,
its own process group), registers members through the portal's registration view (each
confirms by following the link the portal mails, read from Django's in-memory outbox), shows
every lookup live until each is final, prints a summary and stops everything it started,
also on Ctrl-C. Exits 1 when a lookup is still unfinished at the deadline.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import secrets
import signal
import sys
import time
from argparse import ArgumentParser
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from census.models import Attempt, CedulaInfo, Status
from census.observability.stats import compute
from census.testing.simulator import CensusSimulator
from census.testing.solving_service import SolvingService
from portal.demo import mix, processes, summary
from portal.demo.progress import LineLog, LiveTable, Row, Tracked, snapshot
from portal.models import Member

MANAGE_PY = Path(__file__).resolve().parents[3] / "manage.py"
DEMO_DELAYS = (5.0, 10.0, 15.0)
REAL_DELAYS = (60.0, 300.0, 900.0)
#: Seconds between two looks at the database while lookups run.
REFRESH_EVERY = 0.5
#: About how long one attempt keeps a worker busy: a retry due within this many seconds
#: needs a worker, so no new member registers in front of it.
ATTEMPT_SECONDS = 6.0 + 5.0  # the page, and the wait for the captcha's solve
#: Seconds the local solving service takes per solve (the live services: about 30); the
#: client's first look at a task comes 5 s after asking, as the services recommend.
SOLVE_SECONDS = 2.0
#: Once every lookup is final, how long the demo waits at most for the follow-ups they
#: queued (CENSUS_FOLLOW_UPS: the portal's leader notices) before it stops the cluster.
FOLLOW_UP_GRACE = 20.0
#: The portal's settings in the demo's own process: its 25 members register from one address
#: within seconds (no registration throttle), and the confirmation mails stay in memory for
#: the demo to follow their links.
PORTAL_SETTINGS: dict[str, Any] = {
    "PORTAL_REGISTRATION_THROTTLE": None,
    "PORTAL_REGISTRATION_THROTTLE_TOTAL": None,
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
}


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """The census settings the demo runs with, here and in its qcluster."""

    members: int
    rate_limit: float
    scrape_timeout: float
    retry_delays: tuple[float, ...]
    max_attempts: int
    workers: int
    deadline: float
    #: Seconds from the start during which the simulated site blocks every consulta.
    block_spell: float = 0.0
    #: Breaker pauses for the demo (production: 60 s doubling to 1800 s).
    block_backoff: float = 4.0
    block_backoff_max: float = 16.0
    #: Below the 1 s default: the scheduler claim made through the database cache has
    #: whole-second expiry, so a 1 s tick fires retries up to ~2 s late (reported upstream).
    scheduler_tick: float = 0.25

    def census_settings(self, site_url: str) -> dict[str, Any]:
        return {
            "CENSUS_SITE_URL": site_url,
            "CENSUS_RATE_LIMIT_SECONDS": self.rate_limit,
            "CENSUS_SCRAPE_TIMEOUT": self.scrape_timeout,
            "CENSUS_RETRY_DELAYS": list(self.retry_delays),
            "CENSUS_MAX_ATTEMPTS": self.max_attempts,
            "CENSUS_SCHEDULER_TICK": self.scheduler_tick,
            "CENSUS_BLOCK_BACKOFF_SECONDS": self.block_backoff,
            "CENSUS_BLOCK_BACKOFF_MAX_SECONDS": self.block_backoff_max,
        }

    def cluster_env(self, site_url: str, captcha: dict[str, Any]) -> dict[str, str]:
        """The same settings for the qcluster process, through the example's env variables
        (``captcha``: the ``CENSUS_CAPTCHA`` of the local solving service)."""
        env = {
            name: ",".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value}"
            for name, value in self.census_settings(site_url).items()
        }
        return {
            **env,
            "CENSUS_CAPTCHA_SERVICE": captcha["service"],
            "CENSUS_CAPTCHA_API_KEY": captcha["api_key"],
            "CENSUS_CAPTCHA_API_URL": captcha["api_url"],
            "PORTAL_Q_WORKERS": str(self.workers),
        }


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop what was started, then summarise."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _relative(path: Path | str) -> str:
    text = os.path.relpath(path)
    return str(path) if text.startswith("../..") else text


class Command(BaseCommand):
    help = (
        "Run the census demo: register members through the portal, look them up on a real "
        "qcluster against the local census simulator, show progress, print a summary."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--members", type=int, default=25, help="members to register")
        parser.add_argument(
            "--real-delays",
            action="store_true",
            help="production retry ladder 60/300/900 s instead of 5/10/15 s",
        )
        parser.add_argument(
            "--rate-limit",
            type=float,
            default=1.0,
            help="CENSUS_RATE_LIMIT_SECONDS for the demo (default 1; production default 5)",
        )
        parser.add_argument(
            "--scrape-timeout",
            type=float,
            default=20.0,
            help="CENSUS_SCRAPE_TIMEOUT for the demo (default 20: the page and the captcha's "
            "solve; production default 90)",
        )
        parser.add_argument("--workers", type=int, default=2, help="qcluster workers")
        parser.add_argument(
            "--deadline", type=float, default=None, help="seconds before giving up (default: auto)"
        )
        parser.add_argument("--plain", action="store_true", help="line output even on a terminal")
        parser.add_argument(
            "--block-spell",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="the simulated site blocks every consulta (F5 page) for the first SECONDS: "
            "lookups wait behind the breaker, then finish (default 0: no spell)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["members"] < 1:
            raise CommandError("--members must be at least 1")
        if not 0 <= options["block_spell"] <= 600:
            raise CommandError("--block-spell must be between 0 and 600 seconds")
        if importlib.util.find_spec("psutil") is None:
            raise CommandError("the demo needs psutil: pip install -e '.[monitor]'")
        delays = REAL_DELAYS if options["real_delays"] else DEMO_DELAYS
        max_attempts = 3
        config = DemoConfig(
            members=options["members"],
            rate_limit=options["rate_limit"],
            scrape_timeout=options["scrape_timeout"],
            retry_delays=delays,
            max_attempts=max_attempts,
            workers=options["workers"],
            deadline=options["deadline"]
            or 90
            + (6 + SOLVE_SECONDS + 5) * options["members"]
            + sum(delays[: max_attempts - 1])
            + 2 * options["block_spell"],
            block_spell=options["block_spell"],
        )
        live = sys.stdout.isatty() and os.environ.get("TERM") != "dumb" and not options["plain"]
        Demo(config, out=self.stdout, live=live).run()


class Demo:
    """One run of the demo; ``run()`` raises ``CommandError`` if lookups are left unfinished."""

    def __init__(self, config: DemoConfig, *, out: Any, live: bool) -> None:
        self.config = config
        self.out = out
        self.live = live
        self.var_dir = Path(getattr(settings, "VAR_DIR", Path.cwd() / "var"))
        self.log_file = Path(getattr(settings, "LOG_FILE", self.var_dir / "census.log"))
        self.members: list[Tracked] = []
        self.interrupted = False

    def say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    # -- setup ----------------------------------------------------------------------------------

    def prepare_database(self) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        call_command("createcachetable", verbosity=0)

    def quiet_console(self) -> None:
        """Keep log lines off the terminal (the JSON log file still gets everything)."""
        for handler in logging.getLogger().handlers:
            if handler.get_name() == "console":
                handler.setLevel(logging.WARNING)

    def start_cluster(self, site_url: str, captcha: dict[str, Any]) -> processes.ManagedProcess:
        env = {
            **os.environ,
            **self.config.cluster_env(site_url, captcha),
            "DJANGO_SETTINGS_MODULE": os.environ.get(
                "DJANGO_SETTINGS_MODULE", "example_site.settings"
            ),
            "PORTAL_DB": str(settings.DATABASES["default"]["NAME"]),
            "PORTAL_VAR_DIR": str(self.var_dir),
            "CENSUS_LOG_FILE": str(self.log_file),
            "PORTAL_LOG_CONSOLE_LEVEL": "WARNING",
        }
        return processes.ManagedProcess(
            [sys.executable, str(MANAGE_PY), "qcluster"],
            env=env,
            output=self.var_dir / "demo-qcluster.out",
        ).start()

    # -- registration ---------------------------------------------------------------------------

    def register(self, number: int, case: mix.Case) -> Tracked:
        """Register one member through the portal's registration view, as a browser would,
        and confirm the account by the mailed link (its page's button)."""
        cedula = mix.new_cedula(case.prefix, lambda c: Member.objects.filter(username=c).exists())
        password = secrets.token_urlsafe(16)
        address = f"miembro{number}@demo.example"
        client = Client()
        response = client.post(
            reverse("portal:register"),
            {
                "username": cedula,
                "first_name": "Demo",
                "last_name": f"Miembro {number}",
                "email": address,
                "password1": password,
                "password2": password,
            },
        )
        if response.status_code != 302:
            raise CommandError(f"the portal refused member #{number} (HTTP {response.status_code})")
        outbox = getattr(mail, "outbox", [])
        links = [
            re.search(r"http://testserver(/registro/confirmar/\S+/)", message.body)
            for message in outbox
            if message.to == [address]
        ]
        outbox[:] = [message for message in outbox if message.to != [address]]
        if not (links and links[-1]) or client.post(links[-1].group(1)).status_code != 302:
            raise CommandError(f"member #{number} could not confirm their e-mail address")
        user_id = Member.objects.values_list("pk", flat=True).get(username=cedula)
        return Tracked(number=number, user_id=user_id, cedula=cedula, case=case)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> None:
        processes.become_subreaper()
        self.quiet_console()
        self.prepare_database()
        started = time.monotonic()
        service = SolvingService(solve_seconds=SOLVE_SECONDS)
        # The live site's captcha: an image challenge on every click; tokens checked with the
        # service that issued them, as the real site asks Google.
        simulator = CensusSimulator(
            slow_seconds=self.config.scrape_timeout + 12,
            retry_after=2,
            access_log_path=self.var_dir / "demo-simulator.jsonl",
            token_verifier=service.verify,
        )
        cluster: processes.ManagedProcess | None = None
        previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            service.start()
            simulator.start()
            if self.config.block_spell:
                simulator.block_for(self.config.block_spell, "f5")
            self.intro(simulator.url, service)
            captcha = service.setting()
            census = {**self.config.census_settings(simulator.url), "CENSUS_CAPTCHA": captcha}
            with override_settings(**census, **PORTAL_SETTINGS):
                cluster = self.start_cluster(simulator.url, captcha)
                self.watch(cluster, started)
        except Interrupted:
            self.interrupted = True
        finally:
            # A second Ctrl-C must not cut the cleanup short.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            if cluster is not None:
                cluster.stop()
            simulator.stop()
            service.stop()
            processes.kill_descendants()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        rows = snapshot(self.members)
        self.say(self.summary(rows, simulator, service, time.monotonic() - started))
        unfinished = [row for row in rows if not row.final]
        if self.interrupted:
            raise SystemExit(130)
        missing = self.config.members - len(rows)
        if unfinished or missing:
            raise CommandError(
                f"after {time.monotonic() - started:.0f} s: {len(unfinished)} lookup(s) "
                f"unfinished, {missing} member(s) not registered"
            )

    def intro(self, site_url: str, service: SolvingService) -> None:
        c = self.config
        self.say(
            f"census demo: {c.members} members, qcluster with {c.workers} workers, "
            f"census simulator at {site_url}\n"
            f"The site shows every browser an image challenge; the local solving service at "
            f"{service.url} solves each in {SOLVE_SECONDS:g} s (the live services: ~30 s, "
            f"paid per solve).\n"
            f"retry delays {'/'.join(f'{d:g}' for d in c.retry_delays)} s, "
            f"rate limit 1 request per {c.rate_limit:g} s, scrape timeout {c.scrape_timeout:g} s, "
            f"deadline {c.deadline:.0f} s. Ctrl-C stops everything.\n"
            + (
                f"The site blocks every consulta for the first {c.block_spell:g} s: lookups "
                f"wait behind the breaker (pauses {c.block_backoff:g} s doubling to "
                f"{c.block_backoff_max:g} s), then finish.\n"
                if c.block_spell
                else ""
            )
            + f"While it runs: {_relative(sys.executable)} {_relative(MANAGE_PY)} qinfo "
            f"(or qmonitor) in another terminal.\n\n"
        )

    def watch(self, cluster: processes.ManagedProcess, started: float) -> None:
        """Register the members one after the other, and redraw until all are final."""
        view = LiveTable(sys.stdout) if self.live else LineLog(sys.stdout)
        to_register = list(enumerate(mix.cases(self.config.members), start=1))
        deadline = started + self.config.deadline
        settled: float | None = None  # when every lookup was final
        while True:
            tick = time.monotonic()
            rows = snapshot(self.members)
            if to_register and self.has_room(rows):
                self.members.append(self.register(*to_register.pop(0)))
                rows = snapshot(self.members)
            view.update(self.heading(rows, cluster, tick - started), rows, timezone.now())
            if not to_register and all(row.final for row in rows):
                # The follow-ups the last statuses queued run before the cluster stops.
                if settled is None:
                    settled = tick
                if tick - settled > FOLLOW_UP_GRACE or not self.follow_ups_due():
                    return
            if tick > deadline:
                self.say(f"\nDeadline of {self.config.deadline:.0f} s reached.\n")
                return
            if not cluster.running():
                self.say(f"\nqcluster exited; see {_relative(cluster.output)}\n")
                return
            time.sleep(max(REFRESH_EVERY - (time.monotonic() - tick), 0))

    def follow_ups_due(self) -> int:
        lookups = CedulaInfo.objects.filter(user_id__in=[m.user_id for m in self.members])
        return summary.follow_ups_due(lookups.values_list("pk", flat=True))

    def has_room(self, rows: list[Row]) -> bool:
        """Whether a worker is free for one more member, retries due soon counted first.

        Members arrive as fast as the cluster takes them, not faster: a queue deeper than
        the workers would only delay the retries that come due behind it.
        """
        soon = timezone.now() + timedelta(seconds=ATTEMPT_SECONDS)
        busy = sum(
            row.status in (Status.PENDING, Status.SCRAPING)
            or (row.status == Status.RETRYING and (row.next_attempt_at or soon) <= soon)
            for row in rows
        )
        return busy < self.config.workers

    def heading(self, rows: list[Row], cluster: processes.ManagedProcess, elapsed: float) -> str:
        final = sum(row.final for row in rows)
        return (
            f"[{elapsed:5.0f} s] registered {len(rows)}/{self.config.members}, "
            f"final {final}/{self.config.members}; qcluster pid {cluster.pid}"
        )

    # -- the end --------------------------------------------------------------------------------

    def summary(
        self,
        rows: list[Row],
        simulator: CensusSimulator,
        service: SolvingService,
        elapsed: float,
    ) -> str:
        user_ids = [m.user_id for m in self.members]
        lookups = CedulaInfo.objects.filter(user_id__in=user_ids)
        ids = dict(lookups.values_list("user_id", "pk"))
        # Every attempt row moves the status twice (-> scraping, -> retrying or final),
        # deferred ones included (census_stats leaves those out of "attempts used").
        moves = Counter(
            Attempt.objects.filter(lookup__in=lookups).values_list("lookup_id", flat=True)
        )
        consultas = simulator.consultas()
        gaps = [b.monotonic - a.monotonic for a, b in zip(consultas, consultas[1:], strict=False)]
        c = self.config
        # The same database and log as this run, when they were moved by environment variables.
        env = " ".join(
            f"{name}={os.environ[name]}"
            for name in ("PORTAL_DEMO", "PORTAL_VAR_DIR", "PORTAL_DB", "CENSUS_LOG_FILE")
            if os.environ.get(name)
        )
        python = f"{env} {_relative(sys.executable)}".strip()
        manage = _relative(MANAGE_PY)
        return summary.render(
            rows=rows,
            stats=compute(lookups),
            log=summary.check_log(self.log_file, rows, moves, ids),
            follow_ups=summary.check_follow_ups(ids.values()),
            elapsed=elapsed,
            consultas=len(consultas),
            closest_spacing=min(gaps) if gaps else None,
            solves=summary.solves(service.ledger(), lookups=len(rows)),
            settings_note=[
                f"Demo settings: CENSUS_RATE_LIMIT_SECONDS={c.rate_limit:g} (production "
                f"default 5), CENSUS_SCRAPE_TIMEOUT={c.scrape_timeout:g} (default 90), "
                f"CENSUS_RETRY_DELAYS={'/'.join(f'{d:g}' for d in c.retry_delays)} s "
                f"(production 60/300/900: --real-delays), CENSUS_MAX_ATTEMPTS={c.max_attempts}, "
                f"CENSUS_SCHEDULER_TICK={c.scheduler_tick:g} (default 1).",
            ],
            commands=[
                f"{python} {manage} census_stats            # these numbers, from the database",
                f"{python} {manage} qcluster                # then, in another terminal:",
                f"{python} {manage} qinfo                   # or qmonitor: cluster and tasks",
                f"{python} {manage} createsuperuser",
                f"{python} {manage} runserver",
                "    -> http://127.0.0.1:8000/admin/ (Consultas de cédula, Django Q2 tasks)",
                f"cat {_relative(self.var_dir / 'demo-qcluster.out')}   # qcluster console",
            ],
            interrupted=self.interrupted,
        )
