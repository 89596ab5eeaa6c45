"""``census_check_site`` without a browser: a paused census and bad input send nothing."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from census.gate import pause
from census.testing.simulator import CensusSimulator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The stages of a lookup that got an answer, in the order they must be printed.
ANSWERED_STAGES = ["load", "elections", "captcha", "token", "gate", "submit", "answer"]
_STAGE_LINE = re.compile(r"^  (\w+)\s+(ok|fail)\s+\d+\.\d\d s\b")


def _check(*args: str) -> tuple[int, str, str]:
    """Run the command; its exit code, stdout and stderr."""
    out, err = StringIO(), StringIO()
    try:
        call_command("census_check_site", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:
        code = 0
    return code, out.getvalue(), err.getvalue()


def _stages(text: str) -> list[tuple[str, str]]:
    """(name, ok|fail) of each stage line, in the order printed."""
    matches = (_STAGE_LINE.match(line) for line in text.splitlines())
    return [(m.group(1), m.group(2)) for m in matches if m is not None]


@pytest.fixture
def site(census_site: CensusSimulator, settings: Any) -> CensusSimulator:
    """The session simulator; room for a loaded machine; no host-wide browser slots (other
    test runs on this host hold theirs)."""
    settings.CENSUS_SCRAPE_TIMEOUT = 25
    settings.CENSUS_BROWSERS_PER_HOST = 0
    return census_site


@pytest.mark.django_db
def test_a_paused_census_sends_nothing(site: CensusSimulator) -> None:
    """While census is paused the gate refuses: exit 5, why, and no request to the site."""
    pause.pause(by="ops", reason="legal notice")
    code, out, _ = _check("--site", site.url)
    assert code == 5, out
    assert "Nothing was sent: census is paused" in out
    assert "legal notice" in out
    assert _stages(out) == [("gate", "fail")]
    assert site.consultas() == [] and site.access_log == []


@pytest.mark.django_db
def test_json_lists_the_stages_and_keeps_their_old_key(site: CensusSimulator) -> None:
    """--json gives the stage reports under "stages", and the same list under "steps" (the
    key's old name, kept until 0.3.0); the stage lines go to stderr."""
    pause.pause(by="ops", reason="legal notice")
    code, out, err = _check("--site", site.url, "--json")
    report = json.loads(out)
    assert code == report["exit_code"] == 5, out
    assert [(stage["name"], stage["ok"]) for stage in report["stages"]] == [("gate", False)]
    assert report["steps"] == report["stages"]
    assert _stages(err) == [("gate", "fail")]
    assert site.consultas() == [] and site.access_log == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--cedula", "12ab", "--cedula"), ("--site", "ftp://example.org/consultar/", "--site")],
)
def test_bad_input_is_refused_before_anything_is_sent(
    site: CensusSimulator, option: str, value: str, message: str
) -> None:
    """An invalid --cedula or a --site that is not http(s): CommandError (exit 1), nothing
    sent, and the number not echoed."""
    others = [] if option == "--site" else ["--site", site.url]
    with pytest.raises(CommandError) as refused:
        call_command("census_check_site", option, value, *others)
    assert refused.value.returncode == 1
    assert message in str(refused.value) and "nothing was sent" in str(refused.value)
    assert site.access_log == []
