"""census.events: the documented event table and the code agree."""

from __future__ import annotations

import re
from pathlib import Path

from census import events

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_event_table_lists_every_event() -> None:
    """Each event name in census.events has a row in the README's table, and no other row."""
    text = README.read_text()
    table = text[text.index("## Events") :].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert sorted(documented) == sorted(events.ALL)
