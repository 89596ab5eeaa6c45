"""``census_check_site`` without a browser: a paused census and bad input send nothing."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from census.gate import pause
from census.testing.simulator import CensusSimulator
from tests.sites import check_site, stages


@pytest.mark.django_db
def test_a_paused_census_sends_nothing(checked_site: CensusSimulator) -> None:
    """While census is paused the gate refuses: exit 5, why, and no request to the checked_site."""
    pause.pause(by="ops", reason="legal notice")
    code, out, _ = check_site("--site", checked_site.url)
    assert code == 5, out
    assert "Nothing was sent: census is paused" in out
    assert "legal notice" in out
    assert stages(out) == [("gate", "fail")]
    assert checked_site.consultas() == [] and checked_site.access_log == []


@pytest.mark.django_db
def test_json_lists_the_stages_and_keeps_their_old_key(checked_site: CensusSimulator) -> None:
    """--json gives the stage reports under "stages", and the same list under "steps" (the
    key's old name, kept until 0.3.0); the stage lines go to stderr."""
    pause.pause(by="ops", reason="legal notice")
    code, out, err = check_site("--site", checked_site.url, "--json")
    report = json.loads(out)
    assert code == report["exit_code"] == 5, out
    assert [(stage["name"], stage["ok"]) for stage in report["stages"]] == [("gate", False)]
    assert report["steps"] == report["stages"]
    assert stages(err) == [("gate", "fail")]
    assert checked_site.consultas() == [] and checked_site.access_log == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--cedula", "12ab", "--cedula"), ("--site", "ftp://example.org/consultar/", "--site")],
)
def test_bad_input_is_refused_before_anything_is_sent(
    checked_site: CensusSimulator, option: str, value: str, message: str
) -> None:
    """An invalid --cedula or a --site that is not http(s): CommandError (exit 1), nothing
    sent, and the number not echoed."""
    others = [] if option == "--site" else ["--site", checked_site.url]
    with pytest.raises(CommandError) as refused:
        call_command("census_check_site", option, value, *others)
    assert refused.value.returncode == 1
    assert message in str(refused.value) and "nothing was sent" in str(refused.value)
    assert checked_site.access_log == []
