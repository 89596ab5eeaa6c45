"""The layering the design promises: the scraper is a leaf, Django-Q2 calls live in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CENSUS = Path(__file__).resolve().parents[2] / "census"

#: The package's layers, lowest first (docs/development.md, "Layout"): a module imports only
#: from its own layer or lower ones, and the imports within a layer form no cycle. Modules
#: by dotted name under ``census``; a prefix ending in "." takes a whole subpackage.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "pure policy and vocabulary",
        frozenset(
            {
                "cedula",
                "compat",
                "events",
                "exceptions",
                "outcomes",
                "limits",
                "permissions",
                "signals",
                "gate",
                "gate.protocol",
                "gate.rules",
                "gate.shares",
                "lookup",
                "maintenance",
                "observability",
                "q2",
                "q2.context",
            }
        ),
    ),
    (
        "the scraper and the captcha client (no Django)",
        frozenset(
            {
                "scraper",
                "scraper.",
                "captcha",
                "captcha.client",
                "captcha.errors",
                "captcha.policy",
                "captcha.services",
            }
        ),
    ),
    ("settings and storage", frozenset({"conf", "logs", "models", "database", "gate.store"})),
    (
        "services",
        frozenset(
            {
                "gate.waiter",
                "gate.pause",
                "q2.queue",
                "lookup.results",
                "lookup.announce",
                "lookup.status",
                "lookup.policy",
                "lookup.capacity",
                "observability.snapshots",
                "bulk.selection",
                "bulk.window",
                "eligibility",
                "validators",
                "captcha.breaker",
                "captcha.pool",
                "captcha.filler",
                "captcha.solver",
            }
        ),
    ),
    (
        "the pipeline's steps",
        frozenset(
            {
                "lookup.start",
                "lookup.report",
                "lookup.attempt",
                "lookup.conclude",
                "lookup.refresh",
                "followups",
                "bulk",
                "bulk.runs",
                "bulk.feeder",
                "bulk.recheck",
                "maintenance.",
                "observability.stats",
                "q2.hooks",
            }
        ),
    ),
    (
        "entry points",
        frozenset(
            {
                "",
                "receivers",
                "admin",
                "apps",
                "checks",
                "observability.metrics",
                "management.",
                "testing.",
                "contrib.",
            }
        ),
    ),
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((CENSUS / "scraper").glob("*.py")), ids=lambda p: p.name)
def test_the_scraper_package_reads_no_settings_and_touches_no_database(path: Path) -> None:
    """census.scraper imports nothing of Django, the settings, the models or the gate row."""
    forbidden = {"census.conf", "census.models", "census.gate.waiter", "census.gate.store"}
    imports = imported_modules(path)
    assert not {m for m in imports if m == "django" or m.startswith("django.")}
    assert not imports & forbidden


#: census.captcha's modules that must work without Django: the client, its errors, the
#: services' table and the pool's pure rules (``solver``, ``pool``, ``breaker`` and ``filler``
#: are the Django side).
CAPTCHA_DJANGO = {"solver.py", "pool.py", "breaker.py", "filler.py"}
CAPTCHA_CLIENT = sorted(
    p for p in (CENSUS / "captcha").glob("*.py") if p.name not in CAPTCHA_DJANGO
)


@pytest.mark.parametrize("path", CAPTCHA_CLIENT, ids=lambda p: p.name)
def test_the_captcha_client_reads_no_settings(path: Path) -> None:
    """census.captcha's client and rules (not its Django side: ``CAPTCHA_DJANGO``) import
    nothing of Django or the settings, so the client works from the scraper or a shell."""
    imports = imported_modules(path)
    assert not {m for m in imports if m == "django" or m.startswith("django.")}
    assert "census.conf" not in imports and "census.models" not in imports


def test_django_q2_is_called_from_one_module() -> None:
    """Only census.q2.queue queues or schedules; a few modules read Django-Q2 rows or signals."""
    # The others only read Task rows (hooks, sweeper, stats) or connect signals (ticker).
    allowed = {
        "q2/queue.py",
        "q2/hooks.py",
        "maintenance/sweeper.py",
        "maintenance/ticker.py",
        "observability/stats.py",
        "receivers.py",
    }
    callers = {
        str(path.relative_to(CENSUS))
        for path in CENSUS.rglob("*.py")
        if path.parts[-2] not in ("testing", "commands", "migrations")
        and any(m == "django_q" or m.startswith("django_q.") for m in imported_modules(path))
    }
    assert callers - allowed == set(), callers - allowed
    tasks_api = {
        str(path.relative_to(CENSUS))
        for path in CENSUS.rglob("*.py")
        if "django_q.tasks" in imported_modules(path)
    }
    assert tasks_api == {"q2/queue.py"}


def test_public_names_are_declared_and_importable() -> None:
    """census and census.testing declare their public names in __all__, and each resolves."""
    import census
    import census.testing

    for module in (census, census.testing):
        assert module.__all__
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"


def test_every_test_says_what_it_checks() -> None:
    """Each test function in tests/ has a docstring."""
    missing = []
    for path in sorted((CENSUS.parent / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            is_test = isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            if is_test and not ast.get_docstring(node):
                missing.append(f"{path.name}:{node.lineno} {node.name}")
    assert missing == []


def _module_name(path: Path) -> str:
    """``census/scraper/base.py`` -> ``scraper.base``; the package's ``__init__`` -> its name."""
    parts = list(path.relative_to(CENSUS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_modules() -> dict[str, Path]:
    return {
        _module_name(path): path for path in CENSUS.rglob("*.py") if "migrations" not in path.parts
    }


def _internal_imports(path: Path, modules: set[str]) -> set[str]:
    """The census modules ``path`` imports, at any depth (function-level imports too):
    ``from census import events`` counts as ``events``, ``from census.models import X`` as
    ``models``."""

    def inner(name: str) -> str | None:
        if name != "census" and not name.startswith("census."):
            return None
        short = name.removeprefix("census").removeprefix(".")
        return short if short in modules else None

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(m for alias in node.names if (m := inner(alias.name)) is not None)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = inner(f"{node.module}.{alias.name}")
                # A name from a module's namespace is an import of that module.
                target = submodule if submodule is not None else inner(node.module)
                if target is not None:
                    found.add(target)
    return found


def _layer_of(module: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if module in members or any(
            m.endswith(".") and module.startswith(m) or module == m.rstrip(".") for m in members
        ):
            return index
    raise AssertionError(
        f"census.{module} is in no layer: add it to LAYERS (and docs/development.md)"
    )


def _graph() -> dict[str, set[str]]:
    modules = _package_modules()
    names = set(modules)
    return {
        name: _internal_imports(path, names) - {name, _parent(name)}
        for name, path in modules.items()
    }


def _parent(module: str) -> str:
    """A submodule's import of its own package (``scraper.base`` importing ``scraper``'s
    ``__init__`` happens anyway): not an edge."""
    return module.rpartition(".")[0] if "." in module else ""


def test_every_import_goes_down_the_layers() -> None:
    """No module imports from a layer above its own (e.g. a step importing the façade)."""
    upward = [
        f"census.{module} ({LAYERS[_layer_of(module)][0]}) imports census.{target} "
        f"({LAYERS[_layer_of(target)][0]})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if _layer_of(target) > _layer_of(module)
    ]
    assert upward == []


def test_the_package_has_no_import_cycle() -> None:
    """Not even through an import inside a function (which ruff and mypy do not see)."""
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


def test_nothing_imports_a_module_by_its_old_path() -> None:
    """The old paths (``census.compat``) are for code outside this repository: census, its
    tests, the example portal and the benchmarks import every module from its home."""
    from census.compat import MOVED_MODULES, PIPELINE

    old = re.compile(
        r"\b(?:" + "|".join(re.escape(m) for m in [*MOVED_MODULES, PIPELINE]) + r")\b(?!\.\w+\.)"
    )
    old_from = re.compile(
        r"^\s*from census import .*\b("
        + "|".join(m.removeprefix("census.") for m in [*MOVED_MODULES, PIPELINE])
        + r")\b",
        re.MULTILINE,
    )
    root = CENSUS.parent
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("census", "tests", "example", "benchmarks")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name not in ("compat.py", "test_compat.py") and "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if (old.search(line) and not line.startswith("OLD_")) or old_from.match(line)
    ]
    assert offenders == []


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    """The checker itself: two modules importing each other inside functions are found."""
    (tmp_path / "a.py").write_text("def f():\n    from census.b import g\n")
    (tmp_path / "b.py").write_text("def g():\n    from census import a\n")
    modules = {"a", "b"}
    assert _internal_imports(tmp_path / "a.py", modules) == {"b"}
    assert _internal_imports(tmp_path / "b.py", modules) == {"a"}


def test_the_limits_on_outside_waits_are_defined_once() -> None:
    """3600.0 s (Retry-After) and 86400.0 s (deferral) appear in census/limits.py only;
    every default and clamp refers to it. (Integer durations, such as conf's unit table,
    are not limits.)"""
    found = [
        f"{path.relative_to(CENSUS)}:{node.lineno}"
        for path in sorted(CENSUS.rglob("*.py"))
        if "migrations" not in path.parts and path.name != "limits.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, float)
        and node.value in (3600.0, 86400.0)
    ]
    assert found == []


def test_every_exception_census_raises_is_a_census_error() -> None:
    """One ``except CensusError`` catches whatever census raises to its callers: every
    exception class the package defines (its test doubles in ``census.testing`` aside)
    derives from it."""
    import importlib

    from census.exceptions import CensusError

    classes = []
    for name, path in sorted(_package_modules().items()):
        if name.startswith(("testing", "management")) or name == "":
            continue
        module = importlib.import_module(f"census.{name}")
        for node in ast.parse(path.read_text()).body:  # module-level classes
            if isinstance(node, ast.ClassDef) and node.name != "CensusError":
                found = getattr(module, node.name)
                if isinstance(found, type) and issubclass(found, BaseException):
                    classes.append(found)
    assert len(classes) >= 8
    assert [c.__qualname__ for c in classes if not issubclass(c, CensusError)] == []


def test_no_two_public_functions_share_a_name() -> None:
    """One name per idea: a public module-level function's name is used by no other module
    of the package (a second ``queue_now`` or ``prune`` that means something else)."""
    homes: dict[str, list[str]] = {}
    for name, path in sorted(_package_modules().items()):
        if name.startswith(("management", "testing")):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                homes.setdefault(node.name, []).append(name)
    # The same idea in each: connect this module's receivers (Django's, Django-Q2's).
    same_meaning = {"connect"}
    assert {f: m for f, m in homes.items() if len(m) > 1 and f not in same_meaning} == {}
