"""census as a user gets it: the built wheel, a fresh virtualenv, a new Django project.

Nothing of this repository is on the path of the new project: it installs the wheel with
the extras the README's install line names (and only the dependencies they declare), runs
``django-admin startproject``, appends the README's settings block verbatim to its settings,
runs the README's commands, then registers a member and waits for ``found`` from a real
``qcluster`` and Chromium against the simulator. If the README's steps are not enough, this
fails: fix the README, not the test.

In ./test's SQLite pass only (``own_servers``): the README's project runs on SQLite, the
database ``startproject`` gives it; the PostgreSQL pass would test nothing more here.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from census.testing.simulator import CensusSimulator
from tests.clusters import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.own_servers]

README = ROOT / "README.md"
CEDULA = "1000000123"  # the simulator finds cédulas starting with 10


def readme_steps() -> tuple[str, str, list[str]]:
    """The "Add census to your project" section: the extras of its ``pip install`` line,
    its settings block, and the ``manage.py`` commands it names, in order."""
    text = README.read_text()
    section = text.split("## Add census to your project", 1)[1].split("\n## ", 1)[0]
    [install] = re.findall(r'pip install "django-census\[([a-z,]+)\]"', section)
    # The steps are a numbered list: its code blocks are indented by three spaces.
    settings_block = textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])
    after = section.split("```python\n", 1)[1].split("```", 1)[1]
    commands = re.findall(r"^\s*python manage\.py ([a-z_]+)\s*$", after, flags=re.MULTILINE)
    return install, settings_block, commands


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        ROOT,
        {**os.environ},
    )
    [built] = out.glob("django_census-*.whl")
    return built


def test_the_wheel_holds_the_package_and_nothing_of_the_repository(wheel: Path) -> None:
    """The wheel: census with its types, catalog, simulator pages and licence; no example
    portal, tests or benchmarks."""
    names = zipfile.ZipFile(wheel).namelist()
    assert "census/py.typed" in names and "census/testing/site/consultar.html" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not [n for n in names if n.split("/")[0] in ("example", "tests", "benchmarks")]
    # A host project gets no simulator command unless it installs census.testing.
    assert not [n for n in names if n.startswith("census/management/commands/census_sim")]


def test_a_new_project_following_the_readme_gets_a_found_lookup(
    wheel: Path, tmp_path: Path
) -> None:
    """pip install the wheel -> startproject -> README settings -> migrate,
    createcachetable -> check (no census warning) -> register -> qcluster -> found."""
    extras, settings_block, commands = readme_steps()
    assert {"migrate", "createcachetable", "check", "qcluster"} <= set(commands), commands
    venv = tmp_path / "venv"
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    python = str(venv / "bin" / "python")
    # A user's environment: none of this repository's variables or paths.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CENSUS_", "DJANGO_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    run([python, "-m", "pip", "install", "-q", f"{wheel}[{extras}]"], tmp_path, env)
    installed = run([python, "-m", "pip", "list"], tmp_path, env)
    assert "pytest" not in installed.lower()  # the core and the README's extras only

    run(
        [str(venv / "bin" / "django-admin"), "startproject", "newportal", str(tmp_path)],
        tmp_path,
        env,
    )
    settings = tmp_path / "newportal" / "settings.py"
    site = CensusSimulator(captcha="click").start()
    try:
        settings.write_text(
            settings.read_text()
            + "\n# -- the README's settings block --\n"
            + settings_block
            + "\n# -- this test's own: the simulator instead of the real site, quick retries --\n"
            + f'CENSUS_SITE_URL = "{site.url}"\n'
            + "CENSUS_RATE_LIMIT_SECONDS = 1.0\nCENSUS_SCRAPE_TIMEOUT = 40\n"
        )
        manage = [python, "manage.py"]
        for command in ("migrate", "createcachetable"):
            run([*manage, command], tmp_path, env)
        check = run([*manage, "check"], tmp_path, env)
        assert "census." not in check, check
        run(
            [
                *manage,
                "shell",
                "-c",
                "from django.contrib.auth.models import User; "
                f"User.objects.create_user({CEDULA!r})",
            ],
            tmp_path,
            env,
        )
        with open(tmp_path / "qcluster.log", "wb") as log:
            cluster = subprocess.Popen(
                [*manage, "qcluster"], cwd=tmp_path, env=env, stdout=log, stderr=log
            )
        try:
            status = wait_for_final(tmp_path / "db.sqlite3", timeout=240)
        finally:
            cluster.terminate()
            cluster.wait(timeout=60)
        elapsed = time.monotonic() - started
        output = (tmp_path / "qcluster.log").read_text(errors="replace")
        assert status == "found", output[-3000:]
        assert len(site.consultas()) == 1
        print(
            f"\nWHEEL {wheel.name} {wheel.stat().st_size} bytes; install to found {elapsed:.0f} s"
        )
    finally:
        site.stop()


def wait_for_final(database: Path, timeout: float) -> str:
    """The lookup's status once final, read from the project's SQLite file."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as connection:
            row = connection.execute("SELECT status FROM census_cedulainfo").fetchone()
        status = row[0] if row else ""
        if status in ("found", "not_found", "cancelled", "error"):
            return status
        time.sleep(1)
    raise AssertionError(f"no final status in {timeout} s (last: {status!r})")
