"""Census scrapers: the contract (``base``), the pure parser, and the Playwright scraper.

A leaf: nothing here reads Django settings or touches the database. The pipeline builds the
scraper named by ``CENSUS_SCRAPER`` with a gate and a frozen ``ScraperConfig``. Only
``census.scraper.playwright`` imports Playwright; importing this package does not.
"""

from __future__ import annotations

from census.scraper.base import LookupResult, Novedad, Place, Scraper, ScraperConfig

__all__ = ["LookupResult", "Novedad", "Place", "Scraper", "ScraperConfig"]
