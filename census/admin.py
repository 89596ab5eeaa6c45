"""Read-only admin: lookups only change through the pipeline. Leaders may request a refresh."""

from __future__ import annotations

import base64
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from census import bulk, followups
from census.conf import settings
from census.gate import pause
from census.gate.shares import WorkClass
from census.lookup import capacity, refresh
from census.maintenance import sweeper
from census.models import (
    WORK_CLASS_CHOICES,
    Attempt,
    BulkRun,
    CaptchaService,
    CaptchaToken,
    CedulaInfo,
    FollowUp,
    PageSnapshot,
    RateGate,
)

LOOKUP_VIEW = "census.view_cedulainfo"


class LookupPartInline(admin.TabularInline):
    """A read-only part of a lookup (its attempts, its follow-ups): whoever may view the
    lookup sees it; nothing is added, changed or deleted here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(LOOKUP_VIEW)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that change only through census itself: no add, change or delete here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LookupPartAdmin(ReadOnlyAdmin):
    """Rows that tell part of the lookups' story (follow-ups, unexpected pages, captcha
    solves): whoever may view lookups sees them, read-only."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(LOOKUP_VIEW)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


class AttemptInline(LookupPartInline):
    model = Attempt
    fields = (
        "step",
        "outcome",
        "work_class",
        "sent",
        "due_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "error",
        "error_class",
        "crash_traceback",
    )
    readonly_fields = fields
    ordering = ("step",)

    @admin.display(description=_("traceback"))
    def crash_traceback(self, attempt: Attempt) -> str:
        """The crash's traceback (already scrubbed and bounded), preformatted."""
        if not attempt.traceback:
            return ""
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", attempt.traceback)


FOLLOW_UP_FIELDS = (
    "step",
    "position",
    "path",
    "status",
    "state",
    "tries",
    "due_at",
    "started_at",
    "finished_at",
    "error",
)


class FollowUpInline(LookupPartInline):
    """The lookup's follow-up chains, read-only (run a failed one again from Follow-ups)."""

    model = FollowUp
    fields = FOLLOW_UP_FIELDS
    readonly_fields = fields
    ordering = ("step", "position")


@admin.register(CedulaInfo)
class CedulaInfoAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "status",
        "work_class",
        "retry_count",
        "status_changed_at",
        "next_attempt_at",
        "municipio",
        "final_reason",
    )
    list_select_related = ("user",)
    list_filter = ("status", "work_class", "final_reason", "departamento")
    search_fields = ("user__username", "municipio", "puesto")
    date_hierarchy = "created_at"
    inlines = [AttemptInline, FollowUpInline]
    actions = ["refresh_lookup"]
    readonly_fields = [f.name for f in CedulaInfo._meta.fields]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, under a line with each work class's waiting lookups and share."""
        return super().changelist_view(
            request, {"subtitle": work_classes_line(), **(extra_context or {})}
        )

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        # Offered to leaders (CENSUS_IS_LEADER); each row is then asked of CENSUS_CAN_REFRESH.
        return settings.is_leader(request.user)

    @admin.action(description=_("Refresh census lookup"), permissions=["refresh"])
    def refresh_lookup(self, request: HttpRequest, queryset: QuerySet[CedulaInfo]) -> None:
        """Rows ``CENSUS_CAN_REFRESH`` refuses are left alone; one row is refreshed now, more
        go to a background bulk run, fed at the site's pace like ``census_lookup``'s."""
        allowed: list[CedulaInfo] = []
        refused = 0
        for info in queryset.select_related("user"):
            try:
                refresh.check_refresh(request.user, info, door="admin")
            except PermissionDenied:
                refused += 1
            else:
                allowed.append(info)
        if refused:
            self.message_user(
                request,
                gettext("%(refused)d lookup(s) you may not refresh were left alone.")
                % {"refused": refused},
                messages.WARNING,
            )
        if len(allowed) == 1:
            try:
                refresh.check_throttle(request.user, allowed[0], door="admin")
            except refresh.RefreshThrottled as throttled:
                self.message_user(
                    request,
                    gettext("Not refreshed: too soon (%(reason)s); try again in %(seconds)d s.")
                    % {"reason": throttled.reason, "seconds": throttled.retry_after},
                    messages.WARNING,
                )
                return
            started = refresh.restart(allowed[0].pk, requester_id=request.user.pk)
            self.message_user(
                request,
                gettext("1 lookup queued.")
                if started
                else gettext("The lookup is still in flight; it was left alone."),
                messages.SUCCESS if started else messages.INFO,
            )
        elif allowed:
            run, _resumed = bulk.open_run(
                bulk.Selection(user_ids=tuple(sorted(info.user_id for info in allowed))),
                requested_by=request.user,
                kind=BulkRun.Kind.ADMIN,
                background=True,
            )
            if run is not None:
                self.message_user(
                    request,
                    gettext(
                        "%(count)d lookup(s) handed to bulk run %(run)d: the cluster starts "
                        "them at the census site's pace (those still in flight are skipped)."
                    )
                    % {"count": run.total, "run": run.pk},
                    messages.SUCCESS,
                )


def work_classes_line() -> str:
    """Each work class's waiting lookups and what it gets of the site while registrations
    wait (``census.lookup.capacity.queues``), on one line."""
    labels = dict(WORK_CLASS_CHOICES)
    parts = []
    for queue in capacity.queues():
        if queue.share is None:
            share = gettext("first")
        elif queue.work_class is WorkClass.UNVERIFIED:
            share = gettext("spare capacity only")
        else:
            share = gettext("%(percent)s%% share") % {"percent": f"{queue.share * 100:.4g}"}
        parts.append(
            gettext("%(work_class)s %(waiting)d (%(share)s)")
            % {
                "work_class": labels[queue.work_class.value],
                "waiting": queue.waiting,
                "share": share,
            }
        )
    return gettext("Waiting by work class: %(classes)s") % {"classes": " · ".join(parts)}


@admin.register(FollowUp)
class FollowUpAdmin(LookupPartAdmin):
    """Every follow-up, read-only; leaders may run a failed one again."""

    list_display = ("id", "lookup", "step", "position", "path", "state", "tries", "finished_at")
    list_filter = ("state", "status", "path")
    readonly_fields = ("lookup", *FOLLOW_UP_FIELDS)
    actions = ["run_again"]

    def has_run_again_permission(self, request: HttpRequest) -> bool:
        return settings.is_leader(request.user)

    @admin.action(description=_("Run the failed follow-up again"), permissions=["run_again"])
    def run_again(self, request: HttpRequest, queryset: QuerySet[FollowUp]) -> None:
        queued = sum(followups.run_again(row.pk) for row in queryset)
        self.message_user(
            request,
            gettext("%(queued)d follow-up(s) queued again; %(skipped)d had not failed.")
            % {"queued": queued, "skipped": len(queryset) - queued},
            messages.SUCCESS,
        )


@admin.register(RateGate)
class RateGateAdmin(ReadOnlyAdmin):
    """The gate in front of the census site, read-only; operators may pause all traffic."""

    list_display = (
        "name",
        "next_allowed_at",
        "breaker_until",
        "consecutive_blocks",
        "site_changed_at",
        "site_signature",
        "unexpected_streak",
        "paused_at",
        "paused_by",
        "pause_reason",
    )
    readonly_fields = list_display
    actions = ["pause_traffic", "resume_traffic"]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("census.change_rategate")

    @admin.action(description=_("Pause all census traffic"), permissions=["operate"])
    def pause_traffic(self, request: HttpRequest, queryset: QuerySet[RateGate]) -> None:
        pause.pause(by=request.user.get_username(), reason=gettext("paused from the admin"))
        self.message_user(
            request, gettext("Census traffic is paused; nothing is sent."), messages.WARNING
        )

    @admin.action(description=_("Resume census traffic"), permissions=["operate"])
    def resume_traffic(self, request: HttpRequest, queryset: QuerySet[RateGate]) -> None:
        pause.resume(by=request.user.get_username())
        queued = sweeper.requeue_waiting()
        self.message_user(
            request,
            gettext("Census traffic resumed; %(queued)d waiting lookup(s) queued.")
            % {"queued": queued},
            messages.SUCCESS,
        )


@admin.register(PageSnapshot)
class PageSnapshotAdmin(LookupPartAdmin):
    """Answers in no known shape, one row per signature: how often, since when, and the page
    as it looked the first time (screenshot with the cédula's input masked, scrubbed HTML)."""

    list_display = ("signature", "count", "first_seen_at", "last_seen_at", "path", "has_picture")
    search_fields = ("signature",)
    fields = (
        "signature",
        "count",
        "first_seen_at",
        "last_seen_at",
        "lookup",
        "step",
        "path",
        "detail",
        "picture",
        "html",
        "body",
    )
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a signature forgets it: its next occurrence keeps a new snapshot.
        return request.user.has_perm("census.delete_pagesnapshot")

    @admin.display(boolean=True, description=_("screenshot"))
    def has_picture(self, row: PageSnapshot) -> bool:
        return bool(row.screenshot)

    @admin.display(description=_("screenshot"))
    def picture(self, row: PageSnapshot) -> str:
        if not row.screenshot:
            return "-"
        data = base64.b64encode(bytes(row.screenshot)).decode()
        return format_html(
            '<img src="data:image/png;base64,{}" alt="{}" style="max-width: 100%">',
            data,
            row.signature,
        )


#: A solve's columns the admin shows: never ``token``, a bearer credential while it lives.
CAPTCHA_TOKEN_FIELDS = (
    "state",
    "mode",
    "refused",
    "service",
    "task_id",
    "site_key",
    "page_url",
    "asked_at",
    "solved_at",
    "next_poll_at",
    "held_at",
    "finished_at",
    "lookup",
    "step",
    "error",
)


@admin.register(CaptchaToken)
class CaptchaTokenAdmin(LookupPartAdmin):
    """Every captcha solve asked of the solving service and what became of it, read-only.
    The token itself is never shown: whoever holds it may send a consulta with it."""

    list_display = ("id", "state", "mode", "lookup", "asked_at", "solved_at", "refused", "error")
    list_filter = ("state", "mode", "refused")
    list_select_related = ("lookup",)
    date_hierarchy = "asked_at"
    fields = CAPTCHA_TOKEN_FIELDS
    readonly_fields = CAPTCHA_TOKEN_FIELDS
    exclude = ("token",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CaptchaToken]:
        # The token never leaves the database for the admin.
        return super().get_queryset(request).defer("token")


@admin.register(CaptchaService)
class CaptchaServiceAdmin(LookupPartAdmin):
    """The solving service as every host sees it: paused or not (and why, until when, failed
    probes), the census page's site key, and which host keeps the pool. Read-only: a probe
    resumes it."""

    fields = (
        "name",
        "state",
        "reason",
        "opened_at",
        "open_until",
        "failures",
        "site_key",
        "page_url",
        "lease_holder",
        "lease_until",
    )
    list_display = tuple(f for f in fields if f != "page_url")
    readonly_fields = fields

    @admin.display(description=_("state"))
    def state(self, row: CaptchaService) -> str:
        """Paused while ``open_until`` is set: nothing is asked until a probe answers."""
        return gettext("paused") if row.open_until is not None else gettext("available")


@admin.register(BulkRun)
class BulkRunAdmin(admin.ModelAdmin):
    """Bulk runs (census_lookup, re-checks): read-only, with their progress."""

    list_display = (
        "id",
        "kind",
        "selection",
        "requested_by",
        "background",
        "progress",
        "created_at",
        "finished_at",
        "cancelled_at",
    )
    list_filter = ("kind", "background")
    readonly_fields = [f.name for f in BulkRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("progress"))
    def progress(self, run: BulkRun) -> str:
        """Done of total, and how many are in flight or not yet fed (one count per row)."""
        state = bulk.progress(run)
        return gettext("%(done)d/%(total)d (%(in_flight)d in flight, %(unfed)d waiting)") % {
            "done": state.done,
            "total": state.total,
            "in_flight": state.in_flight,
            "unfed": state.unfed,
        }
