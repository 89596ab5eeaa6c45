"""Sphinx configuration for census's documentation (MyST Markdown).

Build: ``.venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html`` (warnings
are errors, so a broken internal link or anchor fails the build; .ci/run runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from census import __version__  # noqa: E402 (after the path is set)

project = "census"
author = "census maintainers"
copyright = "census maintainers"  # noqa: A001 (Sphinx's name)
release = version = __version__

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build"]
# Links to headings (page.md#a-heading) are checked like links to pages.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = f"census {release}"
# The Grafana dashboard is linked as a file to download.
html_extra_path = ["grafana-census.json"]
suppress_warnings: list[str] = []
