"""``census.testing`` as a Django app: add it to ``INSTALLED_APPS`` to get the
``census_simulator`` and ``census_solving_service`` management commands (a development or
test project's choice; a portal that only installs ``census`` gets neither)."""

from __future__ import annotations

from django.apps import AppConfig


class CensusTestingConfig(AppConfig):
    name = "census.testing"
    label = "census_testing"
    verbose_name = "Census testing tools"
