"""Who gets a lookup: the default ``CENSUS_LOOKUP_FOR``.

A user the setting's callable refuses gets no ``CedulaInfo`` at all (no row in some status):
nothing is queued, nothing is sent to the site, and nothing shows as a failed lookup. A bulk
run's ``--missing`` asks the same callable (``census.bulk.selection``), so a refused user
stays without a lookup until the callable accepts them.

Not in ``census.permissions``: that module's rules are pure, and this one reads the cédula
field's name from the settings.
"""

from __future__ import annotations

from typing import Any

from census.cedula import canonical
from census.conf import settings


def lookup_for(user: Any) -> bool:
    """Default ``CENSUS_LOOKUP_FOR``: everyone but a superuser without a valid cédula.

    A superuser made by ``createsuperuser`` (``admin``, or a cédula field left empty) would
    only end ``error/invalid_cedula`` or ``missing_cedula``; a member with a non-cédula still
    gets a lookup, so that the mistake shows as that error.
    """
    if not getattr(user, "is_superuser", False):
        return True
    return canonical(getattr(user, settings.cedula_field, None)) is not None


def is_verified(user: Any) -> bool:
    """Default ``CENSUS_IS_VERIFIED``: every registration counts as verified.

    A portal that checks new members first (an e-mail link, a captcha, a leader's invite)
    names its own callable; until it calls ``census.mark_verified(user)`` that member's
    lookup runs only in the site's spare capacity (``census.gate.shares``).
    """
    return True
