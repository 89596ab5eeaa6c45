"""The portal's census follow-ups (``CENSUS_FOLLOW_UPS`` in example_site/settings.py).

``notify_leader`` tells a member's leader how the member's census lookup ended: an in-app
notice (``portal.Notice``, on the leader's profile under *Avisos*) and an email. Census calls
it as ``notify_leader(lookup_id=..., key=...)`` inside one transaction with the row that
marks the follow-up succeeded, and retries it when it raises:

- the notice is written with ``get_or_create`` on ``key`` (a unique column), so a repeated
  try of the same follow-up finds its notice and adds none;
- the email goes out from ``transaction.on_commit``, and only when the notice was created:
  never for a try that rolled back, never twice for one key. A worker killed between the
  commit and the sending loses that email (``Notice.emailed_at`` stays empty): at most once.

Never the full cédula: the texts show the member's name and ``census.cedula.mask``.
"""

from __future__ import annotations

from functools import partial

import structlog
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from census.cedula import mask
from census.models import CedulaInfo, FollowUp, Status
from portal.models import Member, Notice

logger = structlog.get_logger("portal")

#: The final statuses a leader hears about (not_found is the member's own business).
NOTIFIED = (Status.FOUND, Status.CANCELLED, Status.ERROR)


def notify_leader(lookup_id: int, key: str) -> None:
    """Census follow-up: a notice, then an email, to the leader of the lookup's member.

    Nothing for a member nobody referred, or for a status the leader does not hear about.
    Nothing either while the member has not confirmed their account: their leader sees no
    result before they do (``portal.verification.confirm`` sends it when they confirm).
    """
    info = CedulaInfo.objects.select_related("user__referred_by").filter(pk=lookup_id).first()
    if info is None:
        return
    member: Member = info.user
    leader = member.referred_by
    status = Status(_planned_status(lookup_id, key) or info.status)
    if leader is None or status not in NOTIFIED:
        return
    if not member.is_confirmed:
        logger.info("portal_leader_notice_deferred", lookup_id=lookup_id, member_id=member.pk)
        return
    notice, created = Notice.objects.get_or_create(
        key=key,
        defaults={
            "leader": leader,
            "member": member,
            "lookup_id": lookup_id,
            "status": status.value,
            "text": notice_text(info, member, status),
        },
    )
    if not created:
        logger.info("portal_leader_notice_exists", lookup_id=lookup_id, notice_id=notice.pk)
        return
    logger.info(
        "portal_leader_notified",
        lookup_id=lookup_id,
        notice_id=notice.pk,
        leader_id=leader.pk,
        member_id=member.pk,
        status=status.value,
    )
    transaction.on_commit(partial(send_notice_email, notice.pk), robust=True)


def _planned_status(lookup_id: int, key: str) -> str | None:
    """The final status that planned the follow-up with this key, if census planned it.

    A refresh may have restarted the lookup by the time a retried follow-up runs: the notice
    reports the status the chain was planned for, not the one the lookup has now.
    """
    rows = FollowUp.objects.filter(lookup_id=lookup_id).only(
        "lookup_id", "step", "position", "status"
    )
    return next((row.status for row in rows if row.key == key), None)


def member_label(member: Member) -> str:
    """The member as a leader sees them: their name (else their id) and masked cédula."""
    name = member.get_full_name() or f"Miembro {member.pk}"
    return f"{name} (cédula {mask(member.username)})"


def notice_text(info: CedulaInfo, member: Member, status: Status) -> str:
    """One sentence for the leader, in Spanish."""
    who = member_label(member)
    if status == Status.FOUND:
        return (
            f"{who} está en el censo electoral. Puesto: {info.puesto or '-'}, "
            f"{info.municipio or '-'}, mesa {info.mesa or '-'}."
        )
    if status == Status.CANCELLED:
        return f"{who} tiene una novedad en el censo electoral: {info.novedad or 'sin detalle'}."
    return (
        f"No pudimos completar la consulta del censo de {who}. "
        "Puedes pedir una nueva desde tu perfil."
    )


def send_notice_email(notice_id: int) -> None:
    """After the notice committed: email it to the leader (if they have an address)."""
    notice = Notice.objects.select_related("leader").filter(pk=notice_id).first()
    if notice is None:
        return
    leader = notice.leader
    if not (leader.email and leader.is_active):
        logger.info("portal_leader_email_skipped", notice_id=notice_id, reason="no_address")
        return
    try:
        send_mail(
            subject="Portal de miembros: aviso del censo",
            message=f"{notice.text}\n\nVe todos tus avisos en tu perfil del portal.",
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=[leader.email],
        )
    except Exception:
        # Nothing to undo: the notice is committed and shown on the profile.
        logger.exception("portal_leader_email_failed", notice_id=notice_id)
        return
    Notice.objects.filter(pk=notice_id).update(emailed_at=timezone.now())
    logger.info("portal_leader_emailed", notice_id=notice_id, lookup_id=notice.lookup_id)
