"""Who may ask for a new census lookup."""

from __future__ import annotations

from typing import Any


def is_leader(user: Any) -> bool:
    """Default ``CENSUS_IS_LEADER``: superusers and holders of ``census.refresh_cedulainfo``."""
    if user is None or not getattr(user, "is_active", False):
        return False
    return bool(user.is_superuser or user.has_perm("census.refresh_cedulainfo"))
