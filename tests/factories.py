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


def leaders_only(user: Any) -> bool:
    """A portal's ``CENSUS_LOOKUP_FOR`` (``tests.factories.leaders_only``): leaders only."""
    return bool(user.role == "leader")


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


def captcha_solve(state: str, *, asked_at: Any = None, **fields: Any) -> Any:
    """A ``CaptchaToken`` row in ``state``, asked at ``asked_at`` (default now) and, once
    delivered, solved 30 s later."""
    from datetime import timedelta

    from django.utils import timezone

    from census.models import CaptchaToken

    asked_at = asked_at or timezone.now()
    delivered = state not in (CaptchaToken.State.SOLVING, CaptchaToken.State.FAILED)
    solved_at = asked_at + timedelta(seconds=30) if delivered else None
    return CaptchaToken.objects.create(
        state=state, asked_at=asked_at, solved_at=solved_at, **fields
    )


def captcha_solves() -> None:
    """Ten solves for four lookups. Yesterday (server's local day): used (lookup A), wasted
    in the pool, failed. Today: used and refused, used (both lookup B), wasted (C), held (D),
    ready, being solved, failed. The shared service row: paused for ``zero_balance`` after two
    failed probes, its site key known."""
    from datetime import timedelta

    from django.utils import timezone

    from census.models import CaptchaService, CedulaInfo

    now = timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = midnight - timedelta(hours=1)
    a, b, c, d = (CedulaInfo.objects.get(user=member()) for _ in range(4))
    captcha_solve("used", asked_at=yesterday, lookup=a, step=1)
    captcha_solve("wasted", asked_at=yesterday, error="aged out in the pool")
    captcha_solve("failed", asked_at=yesterday, error="unsolvable")
    captcha_solve("used", lookup=b, step=1, refused=True)
    captcha_solve("used", lookup=b, step=2)
    captcha_solve("wasted", lookup=c, step=1)
    captcha_solve("held", lookup=d, step=1, token="03A-held-token")
    captcha_solve("ready", token="03A-ready-token", site_key="6LcKnownSiteKey")
    captcha_solve("solving", task_id="7012345678")
    captcha_solve("failed", error="service_timeout")
    CaptchaService.objects.create(
        name="default",
        site_key="6LcKnownSiteKey",
        open_until=now + timedelta(seconds=240),
        opened_at=now - timedelta(seconds=180),
        reason="zero_balance",
        failures=2,
    )
