"""Census scrapers. ``get_scraper()`` builds the one named by ``CENSUS_SCRAPER``.

Only ``census.scraper.playwright`` imports Playwright; importing this package does not.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from census.conf import settings
from census.scraper.base import LookupResult, Novedad, Place, Scraper

__all__ = ["LookupResult", "Novedad", "Place", "Scraper", "get_scraper"]


def get_scraper(**kwargs: Any) -> Scraper:
    """Instantiate the scraper class named by ``CENSUS_SCRAPER`` (``gate=``: the rate gate)."""
    return import_string(settings.scraper_path)(**kwargs)
