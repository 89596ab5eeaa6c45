"""The models and their migrations agree."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration() -> None:
    """makemigrations --check finds nothing to write for census."""
    out = StringIO()
    call_command("makemigrations", "census", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
