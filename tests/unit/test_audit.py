"""scripts/audit.py: CI's pip-audit step fails on a vulnerability, never on an unreachable
service, and says which it was."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("census_ci_audit", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


audit = _audit()


def _report(*dependencies: dict[str, Any]) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


DJANGO = {"name": "django", "version": "5.2.19", "vulns": []}
UNAUDITED = {"name": "zipp", "version": "4.1.2", "skip_reason": "Dependency not found on PyPI"}


def test_a_known_vulnerability_fails_the_step_and_is_named() -> None:
    """A vulnerable package fails CI (exit 1) with its id and fixed release."""
    old = {
        "name": "django",
        "version": "5.2.1",
        "vulns": [{"id": "PYSEC-2025-1", "fix_versions": ["5.2.2"], "aliases": []}],
    }
    result = audit.verdict(1, _report(old, UNAUDITED), "", service="pypi")

    assert result.exit_status == 1
    assert result.lines[1] == "  django 5.2.1: PYSEC-2025-1 (fixed in 5.2.2)"


def test_a_clean_audit_passes_and_counts_what_it_looked_up() -> None:
    """No vulnerability: exit 0, how many packages were audited and how many were not."""
    result = audit.verdict(0, _report(DJANGO, UNAUDITED), "", service="pypi")

    assert result.exit_status == 0
    assert result.lines == (
        "pip-audit: 1 package(s) audited against pypi, no known vulnerability "
        "(1 could not be looked up).",
    )


def test_an_unreachable_service_passes_and_says_so() -> None:
    """A connection error (no JSON) or the time limit: exit 0 and NOT RUN, plainly."""
    error = "requests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'"
    refused = audit.verdict(1, "", "Traceback ...\n" + error, service="osv")
    timed_out = audit.verdict(None, "", "", service="pypi")

    assert refused.exit_status == timed_out.exit_status == 0
    assert refused.lines[0].startswith("pip-audit: NOT RUN, the osv vulnerability service is not")
    assert error in refused.lines[0]
    assert "did not answer within 60 s" in timed_out.lines[0]


def test_a_service_that_audits_nothing_is_not_a_clean_audit() -> None:
    """Every package "not found" (an index without the vulnerability data) is NOT RUN, not
    pip-audit's own "No known vulnerabilities found"."""
    result = audit.verdict(0, _report(UNAUDITED, UNAUDITED), "", service="pypi")

    assert result.exit_status == 0
    assert result.lines[0].startswith("pip-audit: NOT RUN")
    assert "answered for none of the 2 packages" in result.lines[0]
