"""Small builders shared by the tests."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

_numbers = itertools.count(1)


def cedula(prefix: str = "10") -> str:
    """A fresh 10-digit cédula starting with ``prefix``."""
    return f"{prefix}{next(_numbers):0{10 - len(prefix)}d}"


def member(username: str | None = None, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username=username or cedula(), **extra)


def leader(**extra: Any) -> Any:
    user = member(role="leader", **extra)
    return user


def permission_holder() -> Any:
    user = member()
    user.user_permissions.add(Permission.objects.get(codename="refresh_cedulainfo"))
    return get_user_model().objects.get(pk=user.pk)


def member_without_lookup(username: str | None = None, **extra: Any) -> Any:
    """A member as a portal that installs census already has them: no lookup yet."""
    from census.models import CedulaInfo

    user = member(username=username, **extra)
    CedulaInfo.objects.filter(user=user).delete()
    return user
