"""census as a user gets it: the built wheel, a fresh virtualenv, a new Django project.

Nothing of this repository is on the path of the new project: it installs the wheel with
the extras the README's install line names for a deployment (and only the dependencies they
declare), runs ``django-admin startproject``, appends that deployment's settings snippet
verbatim to its settings, runs the README's commands for it, then registers a member and
waits for ``found`` from a real ``qcluster`` and Chromium against the simulator. If the
README's steps are not enough, this fails: fix the README, not the test.

One test per deployment the README offers, each in the ./test pass that has its servers:
the embedded default (SQLite, the database ``startproject`` gives) in the SQLite pass
(``own_servers``), PostgreSQL + Redis on ./test's servers in the PostgreSQL pass
(``postgres_redis``), in a database and a queue of its own.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from census.testing.simulator import CensusSimulator
from tests.clusters import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]

README = ROOT / "README.md"
CEDULA = "1000000123"  # the simulator finds cédulas starting with 10
#: How the README names its deployments: in the comment of each one's install line and in
#: the first line of its settings snippet.
EMBEDDED = "The embedded default"
POSTGRES_REDIS = "PostgreSQL + Redis"
FINAL = ("found", "not_found", "cancelled", "error")


@dataclass(frozen=True, kw_only=True)
class Steps:
    """What "Add census to your project" says to do for one deployment."""

    extras: str
    settings: str
    commands: list[str]


def readme_steps(deployment: str) -> Steps:
    """The "Add census to your project" section, for ``deployment``: the extras of the
    ``pip install`` line it labels, the settings snippet whose first comment line names it,
    and the ``manage.py`` commands in order, less those marked for another deployment only
    (``# <deployment> only``)."""
    text = README.read_text()
    section = text.split("## Add census to your project", 1)[1].split("\n## ", 1)[0]
    [extras] = re.findall(
        rf'pip install "[^"]*\[([a-z,]+)\]"\s+#[^\n]*{re.escape(deployment)}',
        section,
        flags=re.IGNORECASE,
    )
    # The steps are a numbered list: its code blocks are indented by three spaces.
    blocks = [textwrap.dedent(b.split("```", 1)[0]) for b in section.split("```python\n")[1:]]
    [settings] = [b for b in blocks if b.lower().startswith(f"# {deployment.lower()}")]
    commands = []
    for command, note in re.findall(
        r"^\s*python manage\.py ([a-z_]+)[ \t]*(?:#(.*))?$", section, flags=re.MULTILINE
    ):
        only = re.match(r"\s*(.+?) only\b", note)
        if not only or only[1].lower() == deployment.lower():
            commands.append(command)
    return Steps(extras=extras, settings=settings, commands=commands)


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


@pytest.mark.own_servers
def test_the_wheel_holds_the_package_and_nothing_of_the_repository(wheel: Path) -> None:
    """The wheel: census with its types, catalog, simulator pages and licence; no example
    portal, tests or benchmarks."""
    names = zipfile.ZipFile(wheel).namelist()
    assert "census/py.typed" in names and "census/testing/site/consultar.html" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not [n for n in names if n.split("/")[0] in ("example", "tests", "benchmarks")]
    # A host project gets no simulator command unless it installs census.testing.
    assert not [n for n in names if n.startswith("census/management/commands/census_sim")]


@pytest.mark.own_servers
def test_a_new_project_following_the_readme_gets_a_found_lookup(
    wheel: Path, tmp_path: Path
) -> None:
    """The embedded default: pip install the wheel -> startproject -> its README snippet ->
    migrate, createcachetable -> check (no census warning) -> register -> qcluster -> found."""
    steps = readme_steps(EMBEDDED)
    assert {"migrate", "createcachetable", "check", "qcluster"} <= set(steps.commands)

    def status() -> str | None:
        with sqlite3.connect(tmp_path / "db.sqlite3") as connection:
            row = connection.execute("SELECT status FROM census_cedulainfo").fetchone()
        return row[0] if row else None

    follow_the_readme(EMBEDDED, steps, wheel, tmp_path, status=status)


@dataclass(frozen=True, kw_only=True)
class PostgresRedis:
    """A database of the test's own on ./test's PostgreSQL, and its Redis."""

    database: dict[str, str]  # libpq keywords: host, port, user, password, dbname
    redis_url: str


@pytest.fixture
def postgres_redis() -> Iterator[PostgresRedis]:
    """A fresh database on ./test's PostgreSQL (``CENSUS_TEST_POSTGRES``), dropped after;
    ./test's Redis database (``CENSUS_TEST_REDIS``)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    url = os.environ.get("CENSUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"census_wheel_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as maintenance:
        maintenance.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresRedis(
            database={**conninfo_to_dict(url), "dbname": name},
            redis_url=os.environ.get("CENSUS_TEST_REDIS", "redis://127.0.0.1:6379/5"),
        )
    finally:
        with psycopg.connect(url, autocommit=True) as maintenance:
            maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres_redis
def test_a_new_project_on_postgres_and_redis_following_the_readme_gets_a_found_lookup(
    wheel: Path, tmp_path: Path, postgres_redis: PostgresRedis
) -> None:
    """PostgreSQL + Redis: pip install the wheel with its extras -> startproject -> its README
    snippet, the database and Redis from the environment variables it reads -> migrate ->
    check (no census warning) -> register -> qcluster on the Redis broker -> found."""
    import psycopg
    import redis

    steps = readme_steps(POSTGRES_REDIS)
    assert {"migrate", "check", "qcluster"} <= set(steps.commands)
    assert "createcachetable" not in steps.commands  # the database cache's only
    database = postgres_redis.database
    env = {
        "POSTGRES_DB": database["dbname"],
        "POSTGRES_USER": database.get("user", "postgres"),
        "POSTGRES_PASSWORD": database.get("password", ""),
        "POSTGRES_HOST": database.get("host", "127.0.0.1"),
        "POSTGRES_PORT": database.get("port", "5432"),
        "REDIS_URL": postgres_redis.redis_url,
    }
    # The Redis database is shared with other test runs (the PostgreSQL pass beside another):
    # a queue (the Redis list is named after the cluster) and cache keys of this test's own.
    own = f"census-wheel-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    isolation = f'Q_CLUSTER["name"] = "{own}"\nCACHES["default"]["KEY_PREFIX"] = "{own}"\n'

    def status() -> str | None:
        with psycopg.connect(**database) as connection:
            row = connection.execute("SELECT status FROM census_cedulainfo").fetchone()
        return row[0] if row else None

    try:
        follow_the_readme(
            POSTGRES_REDIS, steps, wheel, tmp_path, status=status, env=env, settings=isolation
        )
    finally:
        server = redis.Redis.from_url(postgres_redis.redis_url)
        for pattern in (f"{own}:*", f"django_q:{own}:*"):
            for key in server.scan_iter(match=pattern):
                server.delete(key)


def follow_the_readme(
    deployment: str,
    steps: Steps,
    wheel: Path,
    tmp_path: Path,
    *,
    status: Callable[[], str | None],
    env: dict[str, str] | None = None,
    settings: str = "",
) -> None:
    """The README's steps for ``deployment`` in a fresh virtualenv and a new project, up to
    a final lookup; ``status`` reads it from the project's database. ``env``: the
    environment variables the snippet reads; ``settings``: lines of the test's own after it."""
    venv = tmp_path / "venv"
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    python = str(venv / "bin" / "python")
    # A user's environment: none of this repository's variables or paths.
    user_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CENSUS_", "DJANGO_", "PYTHON", "VIRTUAL_ENV"))
    }
    user_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{user_env.get('PATH', '')}"
    user_env.update(env or {})
    run([python, "-m", "pip", "install", "-q", f"{wheel}[{steps.extras}]"], tmp_path, user_env)
    installed = run([python, "-m", "pip", "list"], tmp_path, user_env)
    assert "pytest" not in installed.lower()  # the core and the README's extras only

    run(
        [str(venv / "bin" / "django-admin"), "startproject", "newportal", str(tmp_path)],
        tmp_path,
        user_env,
    )
    settings_file = tmp_path / "newportal" / "settings.py"
    site = CensusSimulator(captcha="click").start()
    try:
        settings_file.write_text(
            settings_file.read_text()
            + f"\n# -- the README's settings snippet: {deployment} --\n"
            + steps.settings
            + "\n# -- this test's own: the simulator instead of the real site, quick retries --\n"
            + f'CENSUS_SITE_URL = "{site.url}"\n'
            + "CENSUS_RATE_LIMIT_SECONDS = 1.0\nCENSUS_SCRAPE_TIMEOUT = 40\n"
            + settings
        )
        manage = [python, "manage.py"]
        before_check = steps.commands[: steps.commands.index("check")]
        for command in before_check:
            run([*manage, command], tmp_path, user_env)
        check = run([*manage, "check"], tmp_path, user_env)
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
            user_env,
        )
        with open(tmp_path / "qcluster.log", "wb") as log:
            cluster = subprocess.Popen(
                [*manage, "qcluster"], cwd=tmp_path, env=user_env, stdout=log, stderr=log
            )
        try:
            final = wait_for_final(status, timeout=240)
        finally:
            cluster.terminate()
            cluster.wait(timeout=60)
        elapsed = time.monotonic() - started
        output = (tmp_path / "qcluster.log").read_text(errors="replace")
        assert final == "found", output[-3000:]
        assert len(site.consultas()) == 1
        print(
            f"\nWHEEL {wheel.name} {wheel.stat().st_size} bytes; {deployment}: "
            f"fresh venv to found {elapsed:.0f} s"
        )
    finally:
        site.stop()


def wait_for_final(status: Callable[[], str | None], timeout: float) -> str:
    """The lookup's status once final."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status()
        if last in FINAL:
            return last
        time.sleep(1)
    raise AssertionError(f"no final status in {timeout} s (last: {last!r})")
