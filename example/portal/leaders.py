"""Who may ask for a new census lookup in the portal, and for whom.

- ``is_leader`` is the portal's ``CENSUS_IS_LEADER``: members with the leader role, plus
  census's default rule (active superusers and holders of ``census.refresh_cedulainfo``).
  ``census.request_refresh`` refuses anyone else.
- ``may_refresh_anyone``: census's default rule only. Superusers and permission holders may
  refresh any member's lookup.
- ``may_refresh``: the referral rule on top. A leader by role may refresh the lookups of the
  members they referred (``Member.referred_by``) once those confirmed their account, and
  their own, nobody else's.
- ``can_refresh`` is the portal's ``CENSUS_CAN_REFRESH``: ``may_refresh`` for a lookup, so
  census's admin action and ``census_lookup`` apply the referral rule as the button does.
"""

from __future__ import annotations

from typing import Any

from census.conf import settings as census_settings
from census.permissions import is_leader as census_default
from portal.models import Member


def is_leader(user: Any) -> bool:
    return bool(getattr(user, "is_leader", False) and user.is_active) or census_default(user)


def may_refresh_someone(user: Any) -> bool:
    """Whether ``user`` may request a refresh at all: the configured ``CENSUS_IS_LEADER``."""
    return bool(census_settings.is_leader(user))


def may_refresh_anyone(user: Any) -> bool:
    """Superusers and holders of ``census.refresh_cedulainfo`` (active): any member."""
    return census_default(user)


def may_refresh(user: Any, member_id: int) -> bool:
    """Whether ``user`` may request a refresh of member ``member_id``'s lookup.

    False alike for a member referred by someone else, a referral not confirmed yet and an id
    that does not exist, so the answer says nothing about which ids exist. Call
    ``may_refresh_someone`` first.
    """
    if may_refresh_anyone(user):
        return True
    if not may_refresh_someone(user):
        return False
    if member_id == user.pk:
        return True
    return Member.objects.filter(
        pk=member_id, referred_by=user, confirmed_at__isnull=False
    ).exists()


def can_refresh(user: Any, lookup: Any) -> bool:
    """``CENSUS_CAN_REFRESH``: whether ``user`` may refresh ``lookup`` (a ``CedulaInfo``)."""
    return may_refresh(user, lookup.user_id)
