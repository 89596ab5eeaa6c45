"""docs/guarantees.md names, for every promise, the test that shows it: each named test and
file must exist, so a renamed or dropped test cannot leave a promise unshown."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guarantees.md"


def _test_functions() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names |= {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    return names


def test_every_test_the_guarantees_name_exists() -> None:
    """Each test the page names, in full, is a test function of the suite."""
    text = PAGE.read_text()
    assert re.findall(r"test_[a-z0-9_]*…", text) == [], "name tests in full"
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", text))
    assert len(named) >= 10, "the page names no tests: its format changed"
    assert sorted(named - _test_functions()) == []


def test_every_file_the_guarantees_name_exists() -> None:
    """Each census/ or tests/ file the page names exists."""
    named = set(re.findall(r"`((?:census|tests)/[\w/]+\.py)`", PAGE.read_text()))
    assert named, "the page names no files: its format changed"
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []


def test_every_promise_row_names_a_test() -> None:
    """No promise without a test that shows it."""
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| **")]
    assert rows, "no promise rows: the table's format changed"
    unshown = [row.split("**")[1] for row in rows if not re.search(r"`test_[a-z0-9_]+`", row)]
    assert unshown == []
