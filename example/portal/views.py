"""The portal's pages: registration, profile (with the census status), refresh for leaders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from census.models import CedulaInfo
from census.pipeline import request_refresh
from portal.census_card import census_card, render_card
from portal.forms import RegistrationForm
from portal.models import Member

#: How often the profile page asks for news while the lookup runs (milliseconds).
POLL_INTERVAL_MS = 2000


def _lookup_of(member: Member) -> CedulaInfo | None:
    return CedulaInfo.objects.filter(user=member).first()


def home(request: HttpRequest) -> HttpResponse:
    return redirect("portal:profile" if request.user.is_authenticated else "portal:register")


def register(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("portal:profile")
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # The user and its lookup commit together; census queues attempt 1 on commit.
        with transaction.atomic():
            member = form.save()
        login(request, member, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "¡Bienvenido! Estamos consultando tu cédula en el censo.")
        return redirect("portal:profile")
    return render(request, "portal/register.html", {"form": form})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    member: Member = request.user  # type: ignore[assignment]
    card = census_card(_lookup_of(member))
    referrals = []
    if member.is_leader:
        referrals = [
            (referral, census_card(_lookup_of(referral)))
            for referral in member.referrals.order_by("first_name", "last_name")
        ]
    return render(
        request,
        "portal/profile.html",
        {
            "member": member,
            "card": card,
            "card_html": render_card(card),
            "referrals": referrals,
            "poll_interval_ms": POLL_INTERVAL_MS,
        },
    )


@never_cache
@login_required
@require_GET
def census_status(request: HttpRequest) -> JsonResponse:
    """The member's lookup as JSON, with the fragment the profile page swaps in."""
    card = census_card(_lookup_of(request.user))  # type: ignore[arg-type]
    return JsonResponse({**card, "html": render_card(card)})


@login_required
@require_POST
def refresh(request: HttpRequest, user_id: int) -> HttpResponse:
    """Leaders only: ``request_refresh`` raises PermissionDenied (HTTP 403) for anyone else."""
    info = get_object_or_404(CedulaInfo, user_id=user_id)
    if request_refresh(info, requested_by=request.user):
        messages.success(request, "Pedimos una nueva consulta del censo.")
    else:
        messages.info(request, "Ya hay una consulta en curso; espera a que termine.")
    return redirect("portal:profile")
