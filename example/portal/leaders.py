"""The portal's ``CENSUS_IS_LEADER``: leaders by role, plus census's default rule."""

from __future__ import annotations

from typing import Any

from census.permissions import is_leader as census_default


def is_leader(user: Any) -> bool:
    return bool(getattr(user, "is_leader", False) and user.is_active) or census_default(user)
