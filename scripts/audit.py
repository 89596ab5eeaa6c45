"""CI's dependency audit: pip-audit over this environment, when its database answers.

    .venv/bin/python scripts/audit.py            # .ci/run does this

Exit status 1 when pip-audit finds a known vulnerability (each is printed), or when pip-audit
is not installed (it comes with the `test` extra). Exit status 0, with one line saying so,
when the vulnerability service cannot be asked: pip-audit fails to connect, takes longer than
TIMEOUT_SECONDS in all, or audits no package at all (a mirror of PyPI's JSON API without the
per-release pages answers "not found" for every one, which pip-audit reports as "No known
vulnerabilities found"). Service: ``CENSUS_AUDIT_SERVICE`` (default ``pypi``; or ``osv``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass

#: The whole audit's budget: CI waits no longer than this for the service.
TIMEOUT_SECONDS = 60
#: One request's socket timeout inside pip-audit.
REQUEST_TIMEOUT_SECONDS = 10


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What CI does with an audit: its exit status and the lines it prints."""

    exit_status: int
    lines: tuple[str, ...]


def verdict(returncode: int | None, stdout: str, stderr: str, *, service: str) -> Verdict:
    """The audit's outcome from pip-audit's JSON output (``None``: it timed out)."""
    if returncode is None:
        return Verdict(
            exit_status=0,
            lines=(
                f"pip-audit: NOT RUN, the {service} vulnerability service did not answer within "
                f"{TIMEOUT_SECONDS} s; dependencies were not audited.",
            ),
        )
    try:
        report = json.loads(stdout)
        dependencies = report["dependencies"]
    except (ValueError, KeyError, TypeError):
        last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        return Verdict(
            exit_status=0,
            lines=(
                f"pip-audit: NOT RUN, the {service} vulnerability service is not reachable "
                f"({last}); dependencies were not audited.",
            ),
        )
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if vulnerable:
        lines = [f"pip-audit: {len(vulnerable)} package(s) with known vulnerabilities:"]
        for dependency in vulnerable:
            for vuln in dependency["vulns"]:
                fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
                lines.append(
                    f"  {dependency['name']} {dependency['version']}: {vuln['id']} "
                    f"(fixed in {fixed})"
                )
        return Verdict(exit_status=1, lines=tuple(lines))
    if not audited:
        return Verdict(
            exit_status=0,
            lines=(
                f"pip-audit: NOT RUN, the {service} vulnerability service answered for none of "
                f"the {len(dependencies)} packages (no database behind this index); "
                "dependencies were not audited.",
            ),
        )
    skipped = len(dependencies) - len(audited)
    return Verdict(
        exit_status=0,
        lines=(
            f"pip-audit: {len(audited)} package(s) audited against {service}, no known "
            f"vulnerability" + (f" ({skipped} could not be looked up)" if skipped else "") + ".",
        ),
    )


def main() -> int:
    service = os.environ.get("CENSUS_AUDIT_SERVICE", "pypi")
    if importlib.util.find_spec("pip_audit") is None:
        print("pip-audit is not installed: pip install -e '.[test]'", file=sys.stderr)
        return 1
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--vulnerability-service",
        service,
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--skip-editable",  # this project itself, from the working tree
        "--timeout",
        str(REQUEST_TIMEOUT_SECONDS),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        result = verdict(None, "", "", service=service)
    else:
        result = verdict(done.returncode, done.stdout, done.stderr, service=service)
    for line in result.lines:
        print(line)
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
