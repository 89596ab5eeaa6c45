"""What a valid registration does, the same on the page whatever the cédula's state.

The view answers every valid registration with the same redirect and message (*Revisa tu
correo para activar tu cuenta*); what happens behind it:

- **a new cédula**: a new member, not confirmed, with a census lookup (its lookup runs in
  spare capacity until confirmed, ``CENSUS_IS_VERIFIED``); the confirmation link goes to
  the address typed;
- **a cédula whose account was never confirmed** (a plain member, not staff): the
  registration replaces it (names, address, password, referral; the lookup stays, it is
  about the same cédula) and the link goes to the new address. The old link dies (its
  fingerprint holds the password hash). Whoever registers a cédula first cannot keep its
  owner out: the owner registers again and confirms;
- **a confirmed account**: nothing changes. The typed password is hashed all the same (that
  is what a new account costs the server, so the answer takes as long), and if the typed
  address is the account's own a mail says the account exists (its owner knows); any other
  address gets nothing. See docs/example.md, *What registration reveals*.
"""

from __future__ import annotations

import structlog
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from portal import verification
from portal.forms import RegistrationForm
from portal.models import Member

logger = structlog.get_logger("portal")


def register(form: RegistrationForm, request: HttpRequest) -> None:
    """Act on a valid ``form`` (see the module's docstring)."""
    data = form.cleaned_data
    existing = Member.objects.filter(username=data["username"]).first()
    if existing is None:
        try:
            # The member and their lookup commit together; census queues it on commit.
            with transaction.atomic():
                member = form.save()
        except IntegrityError:
            # The same cédula registered concurrently, after the look above.
            existing = Member.objects.filter(username=data["username"]).first()
            if existing is None:
                raise
        else:
            logger.info("portal_registered", member_id=member.pk, outcome="new")
            verification.send_confirmation(request, member)
            return
    if _replaceable(existing):
        with transaction.atomic():
            member = Member.objects.select_for_update().get(pk=existing.pk)
            replaced = _replaceable(member)
            if replaced:
                _replace(member, form)
        if replaced:
            logger.info("portal_registered", member_id=member.pk, outcome="replaced")
            verification.send_confirmation(request, member)
            return
    make_password(data["password1"])
    logger.info("portal_registered", member_id=existing.pk, outcome="exists")
    if existing.email and existing.email.lower() == data["email"].lower():
        verification.send_already_registered(request, existing)


def _replaceable(member: Member) -> bool:
    """An unconfirmed registration of a plain member: a new registration replaces it."""
    return (
        member.confirmed_at is None
        and member.role == Member.Role.MEMBER
        and not (member.is_staff or member.is_superuser)
    )


def _replace(member: Member, form: RegistrationForm) -> None:
    data = form.cleaned_data
    member.first_name = data["first_name"]
    member.last_name = data["last_name"]
    member.email = data["email"]
    member.referred_by = data.get("invite_code")
    member.set_password(data["password1"])
    member.date_joined = timezone.now()
    member.save()
