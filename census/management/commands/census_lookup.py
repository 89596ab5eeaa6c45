"""``manage.py census_lookup --as LEADER SELECTION``: start lookups in bulk, paced to the site.

    census_lookup --as 1234 --missing                  # the backfill: members with no lookup
    census_lookup --as 1234 --status found,error --older-than 30d
    census_lookup --as 1234 --users-file members.txt   # one cédula or user id per line
    census_lookup --as 1234 --missing --dry-run        # how many, and how long the site takes
    census_lookup --as 1234 --missing --background     # fed by the cluster (census-bulk-<id>)
    census_lookup --as 1234 --cancel [--run ID]        # stop feeding open runs

Selections combine: ``--missing`` adds members with no lookup to those whose final lookup
matches ``--status`` and ``--older-than``; ``--users-file`` limits the result (or, alone,
selects the listed members). The run is fed a window at a time (``census.bulk``); stopping
the command loses nothing and the same command continues the run.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from census import bulk
from census.conf import parse_duration, settings
from census.lookup.refresh import check_leader, check_refresh_users
from census.models import BulkMember, BulkRun

#: Seconds between two feeds of a run fed from the terminal.
POLL_SECONDS = 2.0
#: Seconds between two plain progress lines when stdout is not a terminal.
LINE_EVERY = 10.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds / 3600:.1f} h"


class Command(BaseCommand):
    help = (
        "Start census lookups in bulk for a leader (--as): a backfill of members with no "
        "lookup, or re-checks, fed to the queue at the census site's pace. Resumable."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--as", dest="leader", required=True, metavar="USERNAME", help="the leader it runs for"
        )
        parser.add_argument("--missing", action="store_true", help="members with no lookup yet")
        parser.add_argument(
            "--status", default="", help="final statuses to re-check, e.g. found,error"
        )
        parser.add_argument(
            "--older-than", metavar="AGE", help="lookups that ended longer ago than AGE (30d, 12h)"
        )
        parser.add_argument("--users-file", metavar="PATH", help="one cédula or user id per line")
        parser.add_argument(
            "--dry-run", action="store_true", help="say how many and how long; start nothing"
        )
        parser.add_argument(
            "--background", action="store_true", help="let the qcluster feed the run"
        )
        parser.add_argument("--cancel", action="store_true", help="cancel open runs")
        parser.add_argument("--run", type=int, help="with --cancel: only this run")
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="feed one window and return (the run stays open; run again to go on)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        leader = self._leader(options["leader"])
        if options["cancel"]:
            ids = bulk.cancel(None if options["run"] is None else [options["run"]])
            self.stdout.write(
                f"cancelled run(s) {', '.join(map(str, ids))}; lookups already queued finish"
                if ids
                else "no open run to cancel"
            )
            return
        try:
            selection = bulk.Selection(
                missing=options["missing"],
                statuses=tuple(s.strip() for s in options["status"].split(",") if s.strip()),
                older_than_s=(
                    parse_duration(options["older_than"]) if options["older_than"] else None
                ),
                user_ids=(
                    bulk.read_users_path(options["users_file"]) if options["users_file"] else None
                ),
            )
        except ValueError as error:  # SelectionError, a bad duration
            raise CommandError(str(error)) from None
        self._check_may_refresh(leader, selection)
        if options["dry_run"]:
            self._dry_run(selection)
            return
        run, resumed = bulk.open_run(
            selection, requested_by=leader, background=options["background"]
        )
        if run is None:
            self.stdout.write("nothing to do: no member matches the selection")
            return
        state = bulk.progress(run)
        verb = "resuming" if resumed else "started"
        self.stdout.write(
            f"{verb} run {run.pk} ({run.selection}): {state.total} member(s), "
            f"{state.fed} already fed; at most {settings.bulk_capacity} queued at a time "
            f"(CENSUS_BULK_WINDOW_SECONDS={settings.bulk_window_seconds:g})"
        )
        if run.background:
            self.stdout.write(
                f"the qcluster feeds it (schedule census-bulk-{run.pk}); "
                f"census_lookup --as ... --cancel --run {run.pk} stops it"
            )
            return
        self._feed_until_done(run, once=options["no_wait"])

    def _leader(self, username: str) -> Any:
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError("--as names no user")
        try:
            check_leader(user, door="census_lookup")
        except PermissionDenied:
            raise CommandError("--as must name a leader (CENSUS_IS_LEADER)") from None
        return user

    def _check_may_refresh(self, leader: Any, selection: bulk.Selection) -> None:
        """``CENSUS_CAN_REFRESH`` for every lookup the run would start: the open run's members
        not yet fed (a resumed run), else the selection's. One refused: nothing starts."""
        open_run = BulkRun.objects.filter(
            selection=selection.key, finished_at=None, cancelled_at=None
        ).first()
        if open_run is not None:
            members = BulkMember.objects.filter(run=open_run, fed_at=None)
            user_ids = list(members.values_list("user_id", flat=True))
        else:
            user_ids = selection.user_pks()
        try:
            check_refresh_users(leader, user_ids, door="census_lookup")
        except PermissionDenied as error:
            raise CommandError(
                f"{error} (CENSUS_CAN_REFRESH); nothing was started. Narrow the selection "
                "(--users-file) or run it as someone who may refresh them all."
            ) from None

    def _dry_run(self, selection: bulk.Selection) -> None:
        count = len(selection.user_pks())
        seconds = count * settings.rate_limit_seconds
        self.stdout.write(
            f"would start {count} lookup(s) ({selection.key}); at one request per "
            f"{settings.rate_limit_seconds:g} s the census site needs at least "
            f"{_duration(seconds)}"
        )

    def _feed_until_done(self, run: BulkRun, *, once: bool) -> None:
        # SIGTERM as Ctrl-C: stop feeding, say how to go on.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        bar = None
        tqdm = _progress_bar_class() if sys.stdout.isatty() else None
        if tqdm is not None:
            # The terminal's size, or 80 x 24 where it reports none (a pty with no size, in
            # which tqdm would otherwise hide the bar).
            size = shutil.get_terminal_size()
            bar = tqdm(
                total=run.total,
                unit="lookup",
                desc=f"run {run.pk}",
                ncols=size.columns,
                nrows=size.lines,
                file=sys.stdout,
            )
        last_line = 0.0
        try:
            while True:
                state = bulk.feed_and_finish(run.pk)
                if state is None:
                    raise CommandError(f"run {run.pk} is gone")
                if bar is not None:
                    bar.update(state.done - bar.n)
                    bar.set_postfix(in_flight=state.in_flight, waiting=state.unfed)
                elif time.monotonic() - last_line >= LINE_EVERY or state.finished:
                    last_line = time.monotonic()
                    self.stdout.write(
                        f"run {run.pk}: {state.done}/{state.total} done, "
                        f"{state.in_flight} in flight, {state.unfed} waiting, "
                        f"ETA {_duration(state.eta_s)}"
                    )
                if state.finished or state.cancelled or once:
                    break
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            state = bulk.progress(run)
            self.stderr.write(
                f"\nstopped: run {run.pk} has {state.fed} of {state.total} fed; what is queued "
                "finishes. Run the same command again to continue."
            )
            sys.exit(130)
        finally:
            if bar is not None:
                bar.close()
        if state.cancelled:
            self.stdout.write(f"run {run.pk} was cancelled")
        elif state.finished:
            self.stdout.write(f"run {run.pk} finished: {state.done} lookup(s) final")


def _progress_bar_class() -> Any:
    """``tqdm.tqdm``, or None without the ``progress`` extra (plain lines instead)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm
