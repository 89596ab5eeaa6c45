#!/usr/bin/env python
"""The example portal's manage.py: ``python example/manage.py runserver`` from the repository."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    # The portal app and example_site live here; census is installed (pip install -e .).
    sys.path.insert(0, str(here))
    sys.path.insert(1, str(here.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
    if sys.argv[1:2] == ["census_demo"]:
        # The demo runs without PORTAL_SECRET_KEY (the development key, DEBUG off); the
        # qcluster it starts inherits this environment.
        os.environ.setdefault("PORTAL_DEMO", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
