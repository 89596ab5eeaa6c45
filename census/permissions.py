"""Who may ask for a new census lookup (``CENSUS_IS_LEADER``'s default).

Of *whose* lookup is ``CENSUS_CAN_REFRESH`` (``census.lookup.refresh.can_refresh`` by
default): census knows leaders, not who referred whom, which is the portal's model.
"""

from __future__ import annotations

from typing import Any


def is_leader(user: Any) -> bool:
    """Default ``CENSUS_IS_LEADER``: superusers and holders of ``census.refresh_cedulainfo``."""
    if user is None or not getattr(user, "is_active", False):
        return False
    return bool(user.is_superuser or user.has_perm("census.refresh_cedulainfo"))
