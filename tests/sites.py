"""What several test modules share about the census-site simulator and ``census_check_site``.

- The scraper's browser tests (``tests/integration/test_scraper_*``) run against a simulator
  of their own (the ``simulator`` and ``site`` fixtures, tests/integration/conftest.py):
  lookups get ``TIMEOUT`` seconds, a 429 asks for ``RETRY_AFTER`` seconds.
- The simulator's own tests (unit and browser) use ``SIM_SLOW_SECONDS``, ``SIM_RETRY_AFTER``
  and ``FOUND_KEYS`` (the ``sim`` fixture, tests/conftest.py).
- ``worker_process`` runs a script as a Django-Q2 worker would: the tests' settings and
  database, census pointed at a simulator.
- ``check_site`` runs ``census_check_site`` in-process; ``stages`` reads its stage lines.
- ``command_env`` is the environment a management command runs in as a subprocess;
  ``django_command`` starts one, its output (stderr too) piped; ``stop_command`` SIGTERMs it.
- ``FakeClock`` stands in for the clocks the simulator, the solving service and the solving
  client take, so that tests move time instead of sleeping.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path

from django.conf import settings as django_settings
from django.core.management import call_command

from census.testing.simulator import CensusSimulator

ROOT = Path(__file__).resolve().parent.parent

#: Seconds a normal lookup may take in the scraper's browser tests (a loaded 2-CPU machine
#: needs ~3 s).
TIMEOUT = 15
#: The Retry-After (seconds) of the scraper tests' simulator.
RETRY_AFTER = 3

#: The simulator tests' slow answer and Retry-After (seconds).
SIM_SLOW_SECONDS = 1.0
SIM_RETRY_AFTER = 7
#: The keys of a found answer's ``data``.
FOUND_KEYS = {
    "nuip",
    "nom_depto",
    "nom_mun",
    "nom_puesto",
    "direccion",
    "mesa",
    "fingreso",
    "coddivipol",
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The stages of a lookup that got an answer, in the order ``census_check_site`` prints them.
ANSWERED_STAGES = ["load", "elections", "captcha", "token", "gate", "submit", "answer"]
STAGE_LINE = re.compile(r"^  (\w+)\s+(ok|fail)\s+\d+\.\d\d s\b")


def check_site(*args: str) -> tuple[int, str, str]:
    """Run ``census_check_site``; its exit code, stdout and stderr."""
    out, err = StringIO(), StringIO()
    try:
        call_command("census_check_site", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:
        code = 0
    return code, out.getvalue(), err.getvalue()


def stages(text: str) -> list[tuple[str, str]]:
    """(name, ok|fail) of each stage line, in the order printed."""
    matches = (STAGE_LINE.match(line) for line in text.splitlines())
    return [(m.group(1), m.group(2)) for m in matches if m is not None]


def worker_process(
    script: str, site: CensusSimulator, *args: str, **env: str
) -> subprocess.Popen[str]:
    """``python -c script *args`` standing in for a Django-Q2 worker that runs lookups: the
    tests' settings and database, census pointed at ``site``; ``env`` on top."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "CENSUS_TEST_DB": str(django_settings.DATABASES["default"]["NAME"]),
            "CENSUS_SITE_URL": site.url,
            "CENSUS_SCRAPE_TIMEOUT": str(TIMEOUT),
            "CENSUS_LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def command_env() -> dict[str, str]:
    """The environment a ``python -m django <command>`` subprocess runs in: the tests'
    settings, the repository and the example portal importable, output unbuffered."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example")]),
        "PYTHONUNBUFFERED": "1",
    }


def django_command(*args: str) -> subprocess.Popen[str]:
    """``python -m django ARGS`` in the repository, with ``command_env()``; stdout piped, text."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_command(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the command and return the rest of its output."""
    try:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


class FakeClock:
    """An injectable clock that only moves when told to; ``sleep`` moves it too (a client's
    injected ``sleep``), so a 30 s solve takes no time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    sleep = advance
