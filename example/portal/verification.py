"""The e-mail check: a registration is confirmed by a signed, time-limited link.

- ``is_verified`` is the portal's ``CENSUS_IS_VERIFIED``: census asks it when a new member's
  lookup starts; the lookup of a member not confirmed yet runs only in the site's spare
  capacity. ``confirm`` marks the member confirmed and, once that committed, calls
  ``census.mark_verified`` so their waiting lookup becomes a normal registration's.
- The link carries ``django.core.signing`` of ``[member id, fingerprint]`` (salt
  ``portal.verification``), valid ``PORTAL_VERIFY_WITHIN`` seconds (default 48 h). The
  fingerprint is an HMAC of the password hash, the address and ``confirmed_at``: the link
  dies once used, and when the registration is replaced (a new password).
- Until the member is confirmed the profile, its JSON and their leader's list show no census
  result, and their leader gets no notice (``portal.followups``); ``confirm`` sends the
  notice the lookup would have sent if it is final already.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

import census
from census.models import CedulaInfo
from portal.models import Member

logger = structlog.get_logger("portal")

SALT = "portal.verification"
#: ``PORTAL_VERIFY_WITHIN`` when the project does not set it: 48 hours.
DEFAULT_VERIFY_WITHIN = 48 * 3600


def is_verified(member: Any) -> bool:
    """``CENSUS_IS_VERIFIED``: whether the member confirmed their account (or was created
    confirmed: the admin, ``createsuperuser``, accounts older than the e-mail check)."""
    return getattr(member, "confirmed_at", None) is not None


def verify_within() -> int:
    return int(getattr(settings, "PORTAL_VERIFY_WITHIN", DEFAULT_VERIFY_WITHIN))


def _fingerprint(member: Member) -> str:
    state = f"{member.pk}|{member.password}|{member.email}|{member.confirmed_at}"
    return salted_hmac(SALT, state).hexdigest()[:32]


def make_token(member: Member) -> str:
    return signing.dumps([member.pk, _fingerprint(member)], salt=SALT)


def member_for(token: str) -> Member | None:
    """The unconfirmed member the token was made for, or None (bad signature, older than
    ``PORTAL_VERIFY_WITHIN``, used already, or made for a registration since replaced)."""
    try:
        member_id, fingerprint = signing.loads(token, salt=SALT, max_age=verify_within())
    except (signing.BadSignature, TypeError, ValueError):
        return None
    member = Member.objects.filter(pk=member_id, confirmed_at=None).first()
    if member is None or not constant_time_compare(fingerprint, _fingerprint(member)):
        return None
    return member


def confirm(member: Member) -> None:
    """Mark ``member`` confirmed; after the commit, census promotes their waiting lookup
    (``census.mark_verified``) and their leader hears of a lookup that ended meanwhile."""
    member.confirmed_at = timezone.now()
    member.save(update_fields=["confirmed_at"])
    logger.info("portal_member_confirmed", member_id=member.pk)
    after_confirmation(member)


def after_confirmation(member: Member) -> None:
    """Once the confirmation commits: ``census.mark_verified`` (the lookup waiting in spare
    capacity becomes a registration's) and the leader's notice of a lookup that ended
    meanwhile. Also for staff confirming a member in the admin. A failure is logged and
    leaves the member confirmed (robust callbacks)."""
    transaction.on_commit(lambda: census.mark_verified(member), robust=True)
    transaction.on_commit(partial(_late_notice, member.pk), robust=True)


def _late_notice(member_id: int) -> None:
    """A referred member's lookup that ended before they confirmed: the leader's notice now
    (``notify_leader`` skipped it then). A lookup still running notifies when it ends."""
    from portal.followups import notify_leader

    info = CedulaInfo.objects.filter(user_id=member_id, user__referred_by__isnull=False).first()
    if info is None or not info.current_status.is_final:
        return
    with transaction.atomic():
        notify_leader(lookup_id=info.pk, key=f"portal-confirmed-{info.pk}-{info.step}")


def send_confirmation(request: HttpRequest, member: Member) -> None:
    """The link that confirms the registration (and logs the member in)."""
    url = request.build_absolute_uri(reverse("portal:confirm", args=[make_token(member)]))
    hours = verify_within() // 3600
    _send(
        member,
        "Portal de miembros: confirma tu correo",
        "Recibimos tu registro en el Portal de miembros. Para activar tu cuenta y ver el "
        f"resultado de la consulta del censo, abre este enlace (vale {hours} horas):\n\n"
        f"{url}\n\nSi no te registraste, ignora este correo: sin confirmar, la cuenta no "
        "muestra nada.",
        "confirmation",
    )


def send_already_registered(request: HttpRequest, member: Member) -> None:
    """To the address of a confirmed account, when someone registers its cédula again with
    that same address: its owner knows the account exists."""
    url = request.build_absolute_uri(reverse("portal:login"))
    _send(
        member,
        "Portal de miembros: ya tienes una cuenta",
        "Alguien, quizá tú, intentó registrarse en el Portal de miembros con tu cédula y este "
        f"correo. Ya tienes una cuenta: entra en\n\n{url}\n\ncon tu cédula y tu clave. Si no "
        "fuiste tú, no tienes que hacer nada.",
        "already_registered",
    )


def _send(member: Member, subject: str, body: str, kind: str) -> None:
    try:
        send_mail(subject, body, from_email=None, recipient_list=[member.email])
    except Exception:
        # The page says the same either way; registering again sends a new link.
        logger.exception("portal_registration_email_failed", member_id=member.pk, kind=kind)
        return
    logger.info("portal_registration_emailed", member_id=member.pk, kind=kind)
