"""The layering the design promises: the scraper is a leaf, Django-Q2 calls live in one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CENSUS = Path(__file__).resolve().parent.parent / "census"


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
    forbidden = {"census.conf", "census.models", "census.ratelimit", "census.pipeline"}
    imports = imported_modules(path)
    assert not {m for m in imports if m == "django" or m.startswith("django.")}
    assert not imports & forbidden


def test_django_q2_is_called_from_one_module() -> None:
    """Only census.queue queues or schedules; a few modules read Django-Q2 rows or signals."""
    # The others only read Task rows (hooks, sweeper, stats) or connect signals (ticker).
    allowed = {"queue.py", "hooks.py", "sweeper.py", "signals.py", "ticker.py", "stats.py"}
    callers = {
        path.name
        for path in CENSUS.glob("*.py")
        if any(m == "django_q" or m.startswith("django_q.") for m in imported_modules(path))
    }
    assert callers - allowed == set(), callers - allowed
    tasks_api = {
        path.name for path in CENSUS.rglob("*.py") if "django_q.tasks" in imported_modules(path)
    }
    assert tasks_api == {"queue.py"}


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
    for path in sorted((CENSUS.parent / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            is_test = isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            if is_test and not ast.get_docstring(node):
                missing.append(f"{path.name}:{node.lineno} {node.name}")
    assert missing == []
