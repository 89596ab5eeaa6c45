"""``manage.py census_check_site [--cedula N] [--site URL] [--out DIR] [--json]``: one lookup,
stage by stage, to see whether the census site still answers in a shape the scraper knows.

It goes through the real scraper (``PlaywrightScraper``, configured from the settings) and the
real cluster-wide gate (``census.gate.waiter.GateWaiter``): the rate limit, the breaker and the
operator's pause hold for it as for any worker, and its request counts like theirs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from argparse import ArgumentParser, RawDescriptionHelpFormatter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from census.cedula import InvalidCedula, mask, normalize, scrub
from census.conf import settings
from census.gate import pause
from census.gate.waiter import GateWaiter
from census.outcomes import OWN_SLOWNESS_REASONS, Outcome
from census.scraper.base import LookupResult
from census.scraper.observe import Fact, StageReport
from census.scraper.playwright import PlaywrightScraper

#: The number looked up unless ``--cedula`` says otherwise: the simulator answers it found
#: (prefix 10, docs/simulator.md). On the real site it is most likely not in the census,
#: which is a known shape too.
DEFAULT_CEDULA = "1012345678"

#: Exit codes.
EXIT_KNOWN = 0  # the site answered in a known shape: found, not_found, cancelled
EXIT_CHANGED = 3  # unexpected_page: the site (its form or its answer) has changed
EXIT_SITE_FAILURE = 4  # blocked, captcha_failed, timeout, connection_error, task_failed
EXIT_NOT_SENT = 5  # nothing was sent: the gate refused (paused, breaker open, backlog, ...)

_SITE_FAILURES = frozenset(
    {
        Outcome.BLOCKED,
        Outcome.CAPTCHA_FAILED,
        Outcome.TIMEOUT,
        Outcome.CONNECTION_ERROR,
        Outcome.TASK_FAILED,
    }
)
#: Characters of a result's detail shown.
DETAIL_CHARS = 300

EPILOG = f"""\
exit codes:
  {EXIT_KNOWN}  the site answered in a known shape (found, not_found, cancelled)
  1  bad input (an invalid --cedula, a --site that is not http(s)): nothing was sent
  {EXIT_CHANGED}  unexpected_page: the site answered in no known shape (it may have changed)
  {EXIT_SITE_FAILURE}  a site failure: blocked, captcha_failed, timeout, connection_error,
     task_failed
  {EXIT_NOT_SENT}  nothing was sent: the gate refused (census paused, breaker open, rate
     backlog, ...) or this host had no browser free

The screenshot (inputs emptied and masked, the number masked in the page's text) and the
scrubbed HTML of the final page, and the answer's body when one was read, are written to
--out (default: a new census-check-site-<UTC time> directory in the system's temp dir).
"""


class Command(BaseCommand):
    help = (
        "Look one cédula up on the census site through the real scraper and the cluster's "
        "gate (rate limit, breaker, pause), printing each stage as it happens, and keep a "
        "screenshot and the scrubbed HTML of the final page. Tells whether the site still "
        "answers in a shape the scraper knows."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--cedula",
            default=DEFAULT_CEDULA,
            help=f"the number to look up (default {DEFAULT_CEDULA}, which the simulator "
            "answers found); masked in all output",
        )
        parser.add_argument(
            "--site", metavar="URL", help="the lookup page (default: CENSUS_SITE_URL)"
        )
        parser.add_argument(
            "--out",
            metavar="DIR",
            help="where the screenshot and HTML go (default: a new directory "
            "census-check-site-<UTC time> in the system's temp dir)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="print one JSON object at the end instead of the verdict (the stages go to "
            "stderr as they happen)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cedula = _cedula(options["cedula"])
        config = settings.scraper_config()
        if options["site"] is not None:
            config = replace(config, site_url=_site(options["site"]))
        out = _out_dir(options["out"]) if options["out"] else None
        as_json = bool(options["json"])
        # With --json, stdout carries the one JSON object; the stages go to stderr.
        live = self.stderr if as_json else self.stdout
        stages: list[StageReport] = []

        def on_stage(report: StageReport) -> None:
            stages.append(report)
            live.write(_stage_line(report))
            live.flush()

        live.write(
            f"Checking {scrub(config.site_url, cedula)} with cédula {mask(cedula)}: one lookup "
            "through the cluster's gate"
        )
        live.flush()
        scraper = PlaywrightScraper(
            gate=GateWaiter(), config=config, on_stage=on_stage, capture="always"
        )
        started = time.monotonic()
        result = scraper.lookup(cedula)
        total = time.monotonic() - started
        code = exit_code(result)
        paths = _write_snapshot(result, cedula, out) if result.snapshot is not None else {}
        if as_json:
            self.stdout.write(json.dumps(_as_json(result, stages, paths, total, code, cedula)))
        else:
            for line in _verdict(result, code, cedula):
                self.stdout.write(line)
            self.stdout.write(f"Total: {total:.2f} s")
            for what, path in paths.items():
                self.stdout.write(f"{_LABELS[what]}: {path}")
            if not paths:
                self.stdout.write("No page was kept (no browser ran).")
        self.stdout.flush()
        if code != EXIT_KNOWN:
            sys.exit(code)


def exit_code(result: LookupResult) -> int:
    """The command's exit code for a lookup's result (see ``EPILOG``)."""
    outcome = result.outcome
    if outcome.is_answer:
        return EXIT_KNOWN
    if outcome is Outcome.UNEXPECTED_PAGE or _site_changed(result):
        return EXIT_CHANGED
    if outcome is Outcome.DEFERRED:
        return EXIT_NOT_SENT
    if outcome in _SITE_FAILURES:
        return EXIT_SITE_FAILURE
    return EXIT_SITE_FAILURE  # lost, missing or invalid cédula: not reached from here


def _site_changed(result: LookupResult) -> bool:
    """An unexpected page the gate answered with "the site has changed" (a deferral)."""
    return result.outcome is Outcome.DEFERRED and result.detail.startswith("site_changed:")


def _cedula(value: str) -> str:
    try:
        return normalize(value)
    except InvalidCedula as invalid:
        raise CommandError(f"--cedula: {invalid}; nothing was sent") from None


def _site(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(
            "--site must be an http:// or https:// URL with a host (the census lookup page); "
            "nothing was sent"
        )
    return value.strip()


def _out_dir(value: str) -> Path:
    path = Path(value).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"--out: cannot create {path}: {error.strerror}") from None
    return path


def _new_out_dir() -> Path:
    """A new census-check-site-<UTC time> directory in the temp dir."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(tempfile.gettempdir()) / f"census-check-site-{stamp}"
    for n in range(1, 100):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return path
    return Path(tempfile.mkdtemp(prefix=f"{base.name}-"))


_LABELS = {"screenshot": "Screenshot (PNG)", "html": "Page HTML (scrubbed)", "body": "Answer body"}


def _write_snapshot(result: LookupResult, cedula: str, out: Path | None) -> dict[str, str]:
    """Write the final page's screenshot, HTML and answer body; their paths by kind."""
    snapshot = result.snapshot
    assert snapshot is not None
    folder = out or _new_out_dir()
    paths: dict[str, str] = {}
    if snapshot.png:
        target = folder / "screenshot.png"
        target.write_bytes(snapshot.png)
        paths["screenshot"] = str(target)
    target = folder / "page.html"
    target.write_text(scrub(snapshot.html, cedula), encoding="utf-8")
    paths["html"] = str(target)
    if snapshot.body:
        target = folder / "body.txt"
        target.write_text(scrub(snapshot.body, cedula), encoding="utf-8")
        paths["body"] = str(target)
    return paths


def _verdict(result: LookupResult, code: int, cedula: str) -> list[str]:
    outcome = result.outcome.value
    detail = scrub(result.detail, cedula)[:DETAIL_CHARS]
    signature = str(result.meta.get("signature") or "")
    if code == EXIT_KNOWN:
        return [f"Answer: {outcome} (known shape)"]
    if code == EXIT_CHANGED:
        lines = [f"Answer: unexpected_page, signature {signature} (the site may have changed)"]
        if _site_changed(result):
            wait = result.retry_after or 0.0
            lines.append(
                "The gate now counts the site as changed: lookups are deferred, one probe "
                f"goes out in {wait:.0f} s"
            )
        return [*lines, f"Detail: {detail}"]
    if code == EXIT_SITE_FAILURE:
        sent = "sent" if result.meta.get("sent") else "not sent"
        return [f"Site failure: {outcome} (the consulta was {sent})", f"Detail: {detail}"]
    reason = detail.split(":", 1)[0]
    lines = [f"Nothing was sent: {_why_not_sent(reason)}", f"Detail: {detail}"]
    if reason == "paused":
        current = pause.current()
        if current is not None:
            why = f" ({current.reason})" if current.reason else ""
            lines.append(
                f"Census is paused since {current.since:%Y-%m-%d %H:%M:%S %Z} by "
                f"{current.by}{why}; census_resume lifts it"
            )
    return lines


def _why_not_sent(reason: str) -> str:
    if reason in OWN_SLOWNESS_REASONS:
        return f"this host could not drive a browser ({reason})"
    return {
        "paused": "census is paused (census_pause); the gate refused",
        "breaker_open": "the breaker is open after a block; the gate refused",
        "probe_in_flight": "another worker's probe is out; the gate refused",
        "rate_backlog": "the rate limit's slots are taken past this lookup's deadline",
        "deferred_ahead": "deferred lookups hold the next slots; the gate refused",
        "gate_unavailable": "the gate's database did not answer",
    }.get(reason, f"the gate refused ({reason})")


def _stage_line(report: StageReport) -> str:
    """``  load        ok    0.41 s  HTTP 200 /consultar/``"""
    status = "ok" if report.ok else "fail"
    summary = _summary(report.facts)
    return f"  {report.name:<11} {status:<5} {report.seconds:5.2f} s  {summary}".rstrip()


def _summary(facts: dict[str, Fact]) -> str:
    get = facts.get
    http: list[str] = []
    if get("http_status") is not None:
        http.append(f"HTTP {get('http_status')}")
    if get("content_type"):
        http.append(str(get("content_type")).split(";", 1)[0])
    if get("path"):
        http.append(str(get("path")))
    parts: list[str] = [" ".join(http)] if http else []
    if get("version"):
        parts.append(f"Chromium {get('version')}")
    if "count" in facts:
        labels = f": {get('labels')}" if get("labels") else ""
        parts.append(f"{get('count')} election(s){labels}")
    if get("elements"):
        parts.append("#documento, #eleccion, #submitBtn present")
    if get("missing"):
        parts.append(f"missing {get('missing')}")
    if get("present"):
        parts.append("widget present" if get("present") == "yes" else "widget missing")
    if get("election") is not None:
        parts.append(f"typed, election {get('election')}")
    if get("got"):
        parts.append(f"got {get('got')}")
    if get("waited_s") is not None:
        parts.append(f"waited {float(get('waited_s') or 0):.2f} s")
    if get("probe") == "yes":
        parts.append("as the breaker's probe")
    if get("reason"):
        parts.append(f"refused: {get('reason')}")
    if get("opens_in_s") is not None:
        parts.append(f"opens in {float(get('opens_in_s') or 0):.0f} s")
    if get("where"):
        parts.append(str(get("where")))
    if get("sent"):
        parts.append("sent" if get("sent") == "yes" else "not sent")
    if get("read"):
        parts.append(f"read from the {get('read')}")
    if get("shape"):
        parts.append(f"{get('shape')} shape")
    if get("outcome"):
        parts.append(f"verdict {get('outcome')}")
    if get("signature"):
        parts.append(f"signature {get('signature')}")
    if get("error"):
        parts.append(str(get("error")))
    if get("detail"):
        parts.append(f"({str(get('detail'))[:120]})")
    return ", ".join(parts)


def _as_json(
    result: LookupResult,
    stages: list[StageReport],
    paths: dict[str, str],
    total: float,
    code: int,
    cedula: str,
) -> dict[str, Any]:
    reports = [{"name": s.name, "ok": s.ok, "seconds": s.seconds, "facts": s.facts} for s in stages]
    return {
        "cedula": mask(cedula),
        "stages": reports,
        # The same list by its old key, kept until 0.3.0 (CHANGELOG).
        "steps": reports,
        "outcome": result.outcome.value,
        "detail": scrub(result.detail, cedula)[:DETAIL_CHARS],
        "signature": str(result.meta.get("signature") or "") or None,
        "sent": bool(result.meta.get("sent")),
        "seconds": round(total, 3),
        "paths": paths,
        "exit_code": code,
    }
