"""The solving service as every host sees it: one ``CaptchaService`` row with its breaker
(paused until a probe answers) and the site key the census page carries.

Lookups read it before they take a token (``census.captcha.pool``); the pool's rounds
(``census.captcha.filler``) probe the paused service; attempts that met the service's failure
inside them pause it for everyone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from census import events
from census.captcha import policy
from census.conf import settings
from census.events import Event
from census.models import CaptchaService

#: The one ``CaptchaService`` row every host shares.
SERVICE = "default"


def service_row() -> CaptchaService | None:
    """The shared row, if any host wrote it yet."""
    return CaptchaService.objects.filter(name=SERVICE).first()


def pause_service(reason: str, now: datetime, *, probe_failed: bool = False) -> None:
    """Ask nothing of the service until its backoff ends (then a probe): every host's lookups
    wait for it, uncharged. Idempotent while it is paused for the same reason."""
    service, _ = CaptchaService.objects.get_or_create(name=SERVICE)
    if not probe_failed and service.open_until is not None and service.open_until > now:
        return
    failures = service.failures + 1 if probe_failed else 0
    until = now + timedelta(seconds=policy.backoff(failures, settings.captcha_probe_seconds))
    CaptchaService.objects.filter(pk=service.pk).update(
        open_until=until,
        opened_at=service.opened_at or now,
        reason=reason[:300],
        failures=failures,
    )
    events.emit(
        Event.CAPTCHA_SERVICE_PAUSED, reason=reason, until=until.isoformat(), failures=failures
    )


def resume_service(balance: float) -> None:
    """The paused service answered its probe: solves are asked again."""
    CaptchaService.objects.filter(name=SERVICE).update(
        open_until=None, opened_at=None, reason="", failures=0
    )
    events.emit(Event.CAPTCHA_SERVICE_RESUMED, balance=balance)


def learn_page(site_key: str, page_url: str) -> None:
    """Keep the site key and page URL the census page showed: the pool's solves are for them."""
    if not site_key:
        return
    service, _ = CaptchaService.objects.get_or_create(name=SERVICE)
    if service.site_key != site_key or service.page_url != page_url[:300]:
        CaptchaService.objects.filter(pk=service.pk).update(
            site_key=site_key, page_url=page_url[:300]
        )
