"""The portal's pages: registration and its e-mail confirmation, profile (with the census
status), refresh for leaders.

What a registration does: ``portal.registration``; the confirmation link:
``portal.verification``; who may refresh whom: ``portal.leaders``; how often (refreshes and
registrations): ``portal.throttle``.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from census import request_refresh
from census.models import CedulaInfo
from portal import leaders, registration, throttle, verification
from portal.census_card import census_card, render_card, unconfirmed_card
from portal.forms import RegistrationForm
from portal.models import Member

logger = structlog.get_logger("portal")

#: How often the profile page first asks for news while the lookup runs (milliseconds); it
#: waits 1.5 times longer after each unchanged answer, up to POLL_MAX_INTERVAL_MS, and starts
#: over when the status changes.
POLL_INTERVAL_MS = 2000
POLL_MAX_INTERVAL_MS = 15000
#: The most recent leader notices the profile lists.
NOTICES_SHOWN = 20


def _lookup_of(member: Member) -> CedulaInfo | None:
    return CedulaInfo.objects.filter(user=member).first()


def _card_of(member: Member) -> dict[str, Any]:
    """The census card, or only "confirm your e-mail" while the account is unconfirmed."""
    if not verification.is_verified(member):
        return unconfirmed_card()
    return census_card(_lookup_of(member))


def home(request: HttpRequest) -> HttpResponse:
    return redirect("portal:profile" if request.user.is_authenticated else "portal:register")


#: What every valid registration answers, whatever the cédula's state (portal.registration).
CHECK_EMAIL = (
    "Revisa tu correo para activar tu cuenta: te enviamos un enlace. Si no te llega en unos "
    "minutos, mira en la carpeta de correo no deseado o regístrate de nuevo."
)


# The passwords stay out of error reports (a "database is locked" e-mail carried password1).
# Login is Django's LoginView, which hides its own.
@sensitive_post_parameters("password1", "password2")
def register(request: HttpRequest) -> HttpResponse:
    """Registration, throttled per client address and overall: every POST counts, valid or
    not (an invite code cannot be guessed faster than the limit); over it, 429 and nothing
    is created. A valid form gets the same redirect and message whatever the cédula."""
    if request.user.is_authenticated:
        return redirect("portal:profile")
    if request.method == "POST":
        address = throttle.client_address(request)
        verdict = throttle.hit(
            (throttle.REGISTRATION, address), (throttle.REGISTRATION_TOTAL, "all")
        )
        if not verdict.allowed:
            assert verdict.rule is not None
            logger.warning(
                "portal_registration_throttled",
                rule=verdict.rule.setting,
                limit=verdict.limit,
                window_s=verdict.window,
                retry_after_s=verdict.retry_after,
            )
            if verdict.rule is throttle.REGISTRATION:
                reason = (
                    "Se enviaron demasiados registros desde tu conexión: se permiten como "
                    f"máximo {verdict.limit} cada {_duration(verdict.window)}."
                )
            else:
                reason = "El portal está recibiendo demasiados registros en este momento."
            return _throttled(request, verdict, reason)
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        registration.register(form, request)
        messages.info(request, CHECK_EMAIL)
        return redirect("portal:login")
    return render(request, "portal/register.html", {"form": form})


@never_cache
@sensitive_post_parameters()
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The mailed link: a page with a button (mail scanners that follow links confirm
    nothing), whose POST confirms the account and logs the member in."""
    member = verification.member_for(token)
    if member is None:
        return render(request, "portal/confirm.html", {"valid": False}, status=400)
    if request.method == "POST":
        with transaction.atomic():
            verification.confirm(member)
        login(request, member, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "¡Tu correo quedó confirmado! Bienvenido al portal.")
        return redirect("portal:profile")
    return render(request, "portal/confirm.html", {"valid": True, "member": member})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    member: Member = request.user  # type: ignore[assignment]
    card = _card_of(member)
    referrals = []
    if member.is_leader:
        member.ensure_invite_code()
        referrals = [
            (referral, _card_of(referral))
            for referral in member.referrals.order_by("first_name", "last_name")
        ]
    notices = list(member.notices.all()[:NOTICES_SHOWN])
    return render(
        request,
        "portal/profile.html",
        {
            "member": member,
            "card": card,
            "card_html": render_card(card),
            "referrals": referrals,
            "notices": notices,
            "poll_interval_ms": POLL_INTERVAL_MS,
            "poll_max_interval_ms": POLL_MAX_INTERVAL_MS,
        },
    )


@never_cache
@login_required
@require_GET
def census_status(request: HttpRequest) -> JsonResponse:
    """The member's lookup as JSON, with the fragment the profile page swaps in."""
    card = _card_of(request.user)  # type: ignore[arg-type]
    return JsonResponse({**card, "html": render_card(card)})


@login_required
@require_POST
def refresh(request: HttpRequest, user_id: int) -> HttpResponse:
    """Ask census for a new lookup of member ``user_id``.

    In this order, so that nobody learns which ids exist from the answer:

    1. the requester must be a leader at all (``CENSUS_IS_LEADER``), else 403;
    2. the throttle (``PORTAL_REFRESH_THROTTLE``) counts the request, 429 when over;
    3. a leader by role may refresh their referrals and themselves, superusers and holders
       of ``census.refresh_cedulainfo`` anyone; else 403, the same 403 for an id that does
       not exist;
    4. only then the lookup is loaded. None (a member created without census, e.g. by
       ``loaddata``): nothing is created, a message says so. An id that does not exist at
       this point (only superusers and permission holders get here with one): 404;
    5. ``census.request_refresh`` asks ``CENSUS_CAN_REFRESH`` (the portal's
       ``leaders.can_refresh``: step 3's rule, which census's admin action and
       ``census_lookup`` ask too).
    """
    requester: Member = request.user  # type: ignore[assignment]
    if not leaders.may_refresh_someone(requester):
        logger.warning("portal_refresh_denied", requested_by=requester.pk, reason="not_a_leader")
        raise PermissionDenied("only leaders may request a new census lookup")
    verdict = throttle.hit((throttle.REFRESH, requester.pk))
    if not verdict.allowed:
        logger.warning(
            "portal_refresh_throttled",
            requested_by=requester.pk,
            limit=verdict.limit,
            window_s=verdict.window,
            retry_after_s=verdict.retry_after,
        )
        return _throttled(
            request,
            verdict,
            "Pediste demasiadas actualizaciones de la consulta del censo: se permiten como "
            f"máximo {verdict.limit} cada {_duration(verdict.window)}.",
        )
    if not leaders.may_refresh(requester, user_id):
        logger.warning(
            "portal_refresh_denied",
            requested_by=requester.pk,
            user_id=user_id,
            reason="not_referred",
        )
        raise PermissionDenied("leaders may refresh only the members they referred")
    info = CedulaInfo.objects.filter(user_id=user_id).first()
    if info is None:
        if not Member.objects.filter(pk=user_id).exists():
            raise Http404("no such member")
        messages.warning(
            request,
            "Este miembro no tiene una consulta del censo; no se pidió ninguna.",
        )
        return redirect("portal:profile")
    if request_refresh(info, requested_by=requester):
        messages.success(request, "Pedimos una nueva consulta del censo.")
    else:
        messages.info(request, "Ya hay una consulta en curso; espera a que termine.")
    return redirect("portal:profile")


def _throttled(request: HttpRequest, verdict: throttle.Verdict, reason: str) -> HttpResponse:
    """HTTP 429 with a Spanish explanation and ``Retry-After``."""
    response = render(
        request,
        "portal/throttled.html",
        {"reason": reason, "retry_after": _duration(verdict.retry_after)},
        status=429,
    )
    response["Retry-After"] = str(verdict.retry_after)
    return response


def _duration(seconds: int) -> str:
    """``45 segundos``, ``1 minuto``, ``10 minutos`` (rounded up)."""
    if seconds < 120 and seconds % 60:
        return f"{seconds} segundo{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minuto{'s' if minutes != 1 else ''}"
