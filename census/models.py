"""Census lookups, their attempts, and the shared rate gate."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from census.gate.shares import WorkClass
from census.outcomes import AnswerReason, Outcome


class Status(models.TextChoices):
    """The only vocabulary of lookup states. Written only by ``census.lookup.status``."""

    #: Created with the user; the first attempt is queued once the registration commits.
    PENDING = "pending", _("Pending")
    #: An attempt is running: the browser is on the census site.
    SCRAPING = "scraping", _("Looking up")
    #: The last attempt failed transiently; the next one is scheduled.
    RETRYING = "retrying", _("Retrying")
    #: Final: the cédula is in the census, with its polling place.
    FOUND = "found", _("Found")
    #: Final: the census does not list the cédula for this election (``final_reason``
    #: ``not_enabled`` or ``pending_request``: listed, but not enabled to vote, or with a
    #: request in process; ``novedad`` keeps the site's words).
    NOT_FOUND = "not_found", _("Not found")
    #: Final: the cédula carries a novedad: cancelled (death, double registration, ...), or
    #: its holder's political rights are lost or suspended (``final_reason``
    #: ``rights_suspended``).
    CANCELLED = "cancelled", _("Cancelled")
    #: Final: attempts exhausted, or the cédula is not valid; details in ``raw_response``.
    ERROR = "error", _("Error")

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


#: The label of each outcome (``census.outcomes`` is the vocabulary; the labels are the
#: admin's). Every outcome has one: ``OUTCOME_CHOICES`` fails to build without it.
OUTCOME_LABELS = {
    Outcome.FOUND: _("Found"),
    Outcome.NOT_FOUND: _("Not found"),
    Outcome.CANCELLED: _("Cancelled"),
    Outcome.INVALID_CEDULA: _("Invalid cédula"),
    Outcome.MISSING_CEDULA: _("No cédula"),
    Outcome.TIMEOUT: _("Timed out"),
    Outcome.CONNECTION_ERROR: _("Connection error"),
    Outcome.CAPTCHA_FAILED: _("Captcha failed"),
    Outcome.BLOCKED: _("Blocked by the site"),
    Outcome.UNEXPECTED_PAGE: _("Unexpected page"),
    Outcome.TASK_FAILED: _("Task failed"),
    Outcome.LOST: _("Lost"),
    Outcome.DEFERRED: _("Deferred"),
}

#: Choices for the fields that hold an outcome: one vocabulary, ``census.outcomes``.
OUTCOME_CHOICES = [(outcome.value, OUTCOME_LABELS[outcome]) for outcome in Outcome]

#: The label of each answer reason (``census.outcomes.AnswerReason``).
REASON_LABELS = {
    AnswerReason.RIGHTS_SUSPENDED: _("Political rights lost or suspended"),
    AnswerReason.NOT_ENABLED: _("Not enabled to vote"),
    AnswerReason.PENDING_REQUEST: _("Request in process"),
}
#: Choices of ``CedulaInfo.final_reason``: the outcome that ended the lookup, or what the
#: answer's wording said beyond it.
FINAL_REASON_CHOICES = OUTCOME_CHOICES + [
    (reason.value, REASON_LABELS[reason]) for reason in AnswerReason
]

FINAL_STATUSES = frozenset({Status.FOUND, Status.NOT_FOUND, Status.CANCELLED, Status.ERROR})
#: The one mapping from the site's answers (``Outcome.is_answer``) to the final status each
#: gives, by their shared value; every other outcome that ends a lookup ends it in ``error``.
ANSWER_STATUS: dict[Outcome, Status] = {o: Status(o.value) for o in Outcome if o.is_answer}
#: The statuses that are census answers; ``error`` says nothing about the member.
ANSWER_STATUSES = frozenset(ANSWER_STATUS.values())

#: The ``CedulaInfo`` fields that hold a census answer (a polling place or a novedad).
ANSWER_FIELDS = (
    "departamento",
    "municipio",
    "puesto",
    "direccion",
    "mesa",
    "coddivipol",
    "novedad",
    "resolucion",
    "fecha_novedad",
)


#: The work classes (``census.gate.shares``), labelled for the admin.
WORK_CLASS_CHOICES = [
    (WorkClass.REGISTRATION.value, _("registration")),
    (WorkClass.REFRESH.value, _("refresh")),
    (WorkClass.BULK.value, _("bulk")),
    (WorkClass.UNVERIFIED.value, _("unverified registration")),
]


class CedulaInfo(models.Model):
    """The census lookup of one user's cédula."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="cedula_info",
        verbose_name=_("user"),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    status_changed_at = models.DateTimeField(_("status changed at"), default=timezone.now)
    #: Which step of the lookup is current, over its whole life: every attempt, deferral and
    #: refresh moves it on. Tasks carry it; work for any other step is stale and ignored.
    step = models.PositiveIntegerField(_("current step"), default=1)
    #: Retries made within the current budget: 0 on the first request to the site, 1 on the
    #: second, 2 on the third (at most ``CENSUS_MAX_ATTEMPTS - 1``). A retry moves it on; a
    #: deferral does not (it charges nothing); a refresh starts it again at 0. The design
    #: card's field: the admin shows it, members never see it.
    retry_count = models.PositiveSmallIntegerField(_("retries"), default=0)
    last_retry_scheduled_at = models.DateTimeField(_("retry scheduled at"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    #: The step that opened the current budget (1, or the one a refresh queued).
    budget_start = models.PositiveIntegerField(_("first step of the budget"), default=1)
    #: Seconds this budget has waited on a closed gate (deferrals spend no attempt).
    deferred_s = models.FloatField(_("waited on the closed gate (s)"), default=0.0)
    #: The lookup holds a place on the gate's deferral cursor (deferred by the closed gate,
    #: not by this host's busy browsers): its next attempt is admitted ahead of fresh ones.
    #: Set by the deferral that placed it, kept while that attempt runs, cleared by every
    #: other move (``census.lookup.status``).
    ticketed = models.BooleanField(_("holds a place in the gate's queue"), default=False)

    #: Why the current budget runs (``census.gate.shares.WorkClass``): what share of the
    #: site it gets. Set when the budget starts; ``mark_verified`` promotes an unverified one.
    work_class = models.CharField(
        _("work class"),
        max_length=16,
        choices=WORK_CLASS_CHOICES,
        default=WorkClass.REGISTRATION.value,
    )
    #: Who asked for the current budget (a refresh or a bulk run), and when; empty for a
    #: registration. ``CENSUS_REFRESH_PER_HOUR`` counts these.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("requested by"),
    )
    requested_at = models.DateTimeField(_("requested at"), null=True, blank=True)

    departamento = models.CharField(_("department"), max_length=100, blank=True)
    municipio = models.CharField(_("municipality"), max_length=100, blank=True)
    puesto = models.CharField(_("polling place"), max_length=200, blank=True)
    direccion = models.CharField(_("address"), max_length=200, blank=True)
    mesa = models.CharField(_("table"), max_length=20, blank=True)
    #: The polling place's DIVIPOL code, when the answer carried one: digits only.
    coddivipol = models.CharField(_("polling place code"), max_length=20, blank=True)

    novedad = models.CharField(_("census notice"), max_length=200, blank=True)
    resolucion = models.CharField(_("resolution"), max_length=100, blank=True)
    fecha_novedad = models.CharField(_("notice date"), max_length=50, blank=True)

    #: Error details kept when the lookup ends in ``error`` (bounded, cédula scrubbed).
    raw_response = models.TextField(_("response / details"), blank=True)
    #: The outcome that ended the lookup, or why it gave up; for an answer whose wording says
    #: more than its status, an ``AnswerReason`` (``rights_suspended``, ...).
    final_reason = models.CharField(
        _("final reason"), max_length=32, blank=True, choices=FINAL_REASON_CHOICES
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    #: The final result this lookup had before its current budget (a refresh or re-check):
    #: status, reason, the census fields and when it ended. Empty before any refresh.
    previous_result = models.JSONField(_("previous result"), default=dict, blank=True)

    class Meta:
        verbose_name = _("census lookup")
        verbose_name_plural = _("census lookups")
        permissions = [("refresh_cedulainfo", _("Can request a new census lookup"))]
        indexes = [
            models.Index(fields=["work_class", "status"], name="census_lookup_class_status"),
            models.Index(fields=["requested_by", "requested_at"], name="census_lookup_requested"),
        ]

    def __str__(self) -> str:
        return gettext("lookup %(id)s (%(status)s)") % {
            "id": self.pk,
            "status": self.get_status_display(),
        }

    @property
    def current_status(self) -> Status:
        return Status(self.status)


class Attempt(models.Model):
    """One attempt of a lookup: the history the admin shows inline."""

    lookup = models.ForeignKey(
        CedulaInfo, on_delete=models.CASCADE, related_name="attempts", verbose_name=_("lookup")
    )
    #: The lookup's step this attempt ran for (``CedulaInfo.step`` when it was claimed).
    step = models.PositiveIntegerField(_("step"))
    #: Empty while the attempt runs, then its outcome.
    outcome = models.CharField(_("outcome"), max_length=32, blank=True, choices=OUTCOME_CHOICES)
    #: When the attempt became due (scheduled retries) or was queued.
    due_at = models.DateTimeField(_("due at"), null=True, blank=True)
    started_at = models.DateTimeField(_("start"), default=timezone.now)
    finished_at = models.DateTimeField(_("end"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)
    #: The Django-Q2 task that claimed this attempt; only it may conclude the attempt.
    task_id = models.CharField(_("Django-Q2 task"), max_length=32, blank=True)
    #: True once the consulta request left the browser for the census site.
    sent = models.BooleanField(_("request sent"), default=False)
    #: When the request was confirmed sent, on the database's clock.
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    #: Census data of an answer (place or novedad fields, and the wording's ``reason``),
    #: written by the task.
    answer = models.JSONField(_("answer"), default=dict, blank=True)
    #: Seconds the site (or the closed gate) asked to wait, clamped.
    retry_after = models.FloatField(_("retry after (s)"), null=True, blank=True)
    #: The lookup's work class when this attempt was claimed: what share it counts against.
    work_class = models.CharField(
        _("work class"), max_length=16, choices=WORK_CLASS_CHOICES, blank=True
    )
    #: A crash (a bug, not a site failure): the exception's class and its traceback,
    #: scrubbed of the cédula and bounded.
    error_class = models.CharField(_("error class"), max_length=200, blank=True)
    traceback = models.TextField(_("traceback"), blank=True)

    class Meta:
        verbose_name = _("attempt")
        verbose_name_plural = _("attempts")
        ordering = ["lookup", "step"]
        constraints = [
            models.UniqueConstraint(fields=["lookup", "step"], name="census_attempt_unique")
        ]
        indexes = [
            models.Index(fields=["work_class", "started_at"], name="census_attempt_class_start")
        ]

    def __str__(self) -> str:
        return gettext("step %(step)s of lookup %(id)s") % {
            "step": self.step,
            "id": self.lookup_id,
        }

    @property
    def late_by(self) -> float | None:
        """Seconds between when the attempt was due and when it started."""
        if self.due_at is None:
            return None
        return (self.started_at - self.due_at).total_seconds()


class RateGate(models.Model):
    """The next moment a census request may be sent, shared by every worker and cluster.

    Every time here is on the database's clock (``census.gate.store``)."""

    name = models.CharField(max_length=50, primary_key=True)
    #: The next free request slot (rate spacing).
    next_allowed_at = models.DateTimeField(default=timezone.now)
    #: While set and in the future the breaker is open: nothing goes to the site.
    breaker_until = models.DateTimeField(null=True, blank=True)
    #: Blocks in a row without an answer in between; the pause doubles with each.
    consecutive_blocks = models.PositiveIntegerField(default=0)
    #: Once the pause is over, one probe request is in flight until this time (its lease).
    probe_until = models.DateTimeField(null=True, blank=True)
    #: Where the next deferred lookup is placed: deferrals are spread over the gate's slots.
    defer_cursor = models.DateTimeField(null=True, blank=True)
    #: When the last request was confirmed sent: the next may leave one interval later.
    last_sent_at = models.DateTimeField(null=True, blank=True)
    #: While set and in the future, a request is leaving (its send lease, until confirmed).
    sending_until = models.DateTimeField(null=True, blank=True)
    #: Set by ``census_pause``: nothing goes to the site until ``census_resume``.
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)
    paused_by = models.CharField(_("paused by"), max_length=150, blank=True)
    pause_reason = models.CharField(_("pause reason"), max_length=300, blank=True)
    #: Answers in no known shape since the last one in a known shape.
    unexpected_streak = models.PositiveIntegerField(_("unexpected answers in a row"), default=0)
    #: Set while the site counts as changed (the breaker is open for that, not a block).
    site_changed_at = models.DateTimeField(_("site changed at"), null=True, blank=True)
    site_signature = models.CharField(_("site change signature"), max_length=80, blank=True)

    class Meta:
        verbose_name = _("request rate limit")
        verbose_name_plural = _("request rate limits")

    def __str__(self) -> str:
        return f"{self.name}: next at {self.next_allowed_at:%H:%M:%S}"


class BulkRun(models.Model):
    """One ``census_lookup`` run (or periodic re-check): its members are fed to the queue a
    window at a time, so it survives Ctrl-C and killed processes and resumes where it was."""

    class Kind(models.TextChoices):
        COMMAND = "command", _("census_lookup command")
        RECHECK = "recheck", _("periodic re-check")
        #: The admin's refresh action on more than one lookup.
        ADMIN = "admin", _("admin refresh action")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.COMMAND)
    #: The leader it runs for (None: the app's periodic re-check).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("requested by"),
    )
    #: The selection, normalised (no cédula): a run with the same key resumes this one.
    selection = models.CharField(_("selection"), max_length=300)
    #: Fed by a Django-Q2 schedule (``census-bulk-<id>``) instead of the terminal.
    background = models.BooleanField(_("in the background"), default=False)
    total = models.PositiveIntegerField(_("members"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True)

    class Meta:
        verbose_name = _("bulk lookup")
        verbose_name_plural = _("bulk lookups")
        constraints = [
            # At most one open run per selection: a second one resumes it (census.bulk.runs).
            models.UniqueConstraint(
                fields=["selection"],
                condition=models.Q(finished_at=None, cancelled_at=None),
                name="census_bulkrun_one_open_per_selection",
            )
        ]

    def __str__(self) -> str:
        return gettext("bulk lookup %(id)s (%(selection)s)") % {
            "id": self.pk,
            "selection": self.selection,
        }

    @property
    def is_open(self) -> bool:
        return self.finished_at is None and self.cancelled_at is None


class BulkMember(models.Model):
    """A user selected by a bulk run; ``fed_at`` is set when its lookup was started."""

    class Fed(models.TextChoices):
        STARTED = "started", _("started")
        #: Its lookup was already in flight: that one counts, nothing new was queued.
        IN_FLIGHT = "in_flight", _("already in flight")

    run = models.ForeignKey(
        BulkRun, on_delete=models.CASCADE, related_name="members", verbose_name=_("bulk lookup")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("member"),
    )
    fed_at = models.DateTimeField(_("started at"), null=True, blank=True)
    fed = models.CharField(_("start"), max_length=16, choices=Fed.choices, blank=True)

    class Meta:
        verbose_name = _("bulk lookup member")
        verbose_name_plural = _("bulk lookup members")
        constraints = [
            models.UniqueConstraint(fields=["run", "user"], name="census_bulkmember_unique")
        ]
        indexes = [models.Index(fields=["run", "fed_at"])]

    def __str__(self) -> str:
        return gettext("member %(user)s of bulk lookup %(run)s") % {
            "user": self.user_id,
            "run": self.run_id,
        }


class FollowUp(models.Model):
    """One step of a lookup's follow-up chain (``CENSUS_FOLLOW_UPS``), planned in the
    transaction that gave the lookup its final status and run once, in order.

    ``census.followups`` is the only writer of ``state``.
    """

    class State(models.TextChoices):
        #: Its turn comes when the follow-up before it has succeeded.
        WAITING = "waiting", _("waiting for the one before")
        #: Due (at ``due_at``): a task is queued or scheduled for it.
        QUEUED = "queued", _("queued")
        #: A task has claimed it and runs it.
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        #: Every try failed; the chain stops here until someone runs it again.
        FAILED = "failed", _("failed")

    lookup = models.ForeignKey(
        CedulaInfo, on_delete=models.CASCADE, related_name="follow_ups", verbose_name=_("lookup")
    )
    #: The lookup's step that reached the final status: one chain per final status reached
    #: (a refresh that ends again plans a new chain, with new keys).
    step = models.PositiveIntegerField(_("step"))
    #: 1-based place in the chain.
    position = models.PositiveSmallIntegerField(_("position"))
    #: The final status that planned the chain.
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    #: Dotted path of the callable: ``func(lookup_id=..., key=...)``.
    path = models.CharField(_("task"), max_length=200)
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.WAITING, db_index=True
    )
    #: Tries claimed so far (a worker killed mid-run counts).
    tries = models.PositiveSmallIntegerField(_("tries"), default=0)
    due_at = models.DateTimeField(_("due at"), null=True, blank=True)
    #: The Django-Q2 task that claimed the current try.
    task_id = models.CharField(_("Django-Q2 task"), max_length=32, blank=True)
    started_at = models.DateTimeField(_("start"), null=True, blank=True)
    finished_at = models.DateTimeField(_("end"), null=True, blank=True)
    #: The last failure: exception class and message, cédula scrubbed, bounded.
    error = models.CharField(_("error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("follow-up")
        verbose_name_plural = _("follow-ups")
        ordering = ["lookup", "step", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["lookup", "step", "position"], name="census_followup_unique"
            )
        ]

    def __str__(self) -> str:
        return gettext("follow-up %(position)s (%(name)s) of lookup %(id)s") % {
            "position": self.position,
            "name": self.name,
            "id": self.lookup_id,
        }

    @property
    def name(self) -> str:
        """The callable's own name: the last part of its path."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def key(self) -> str:
        """The idempotency key given to the callable: the same for every try of this
        follow-up, different for every other (another chain gets another step)."""
        return f"census-followup-{self.lookup_id}-{self.step}-{self.position}"


class PageSnapshot(models.Model):
    """One kind of answer in no known shape (its signature): how often it came, and the page
    as it looked the first time (HTML and screenshot, the cédula scrubbed and masked)."""

    #: Which shape check failed (``census.scraper.parser``'s vocabulary).
    signature = models.CharField(_("signature"), max_length=80, unique=True)
    count = models.PositiveIntegerField(_("times seen"), default=1)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now, db_index=True)
    #: The lookup and step that saw it first (the lookup may since have been deleted).
    lookup = models.ForeignKey(
        CedulaInfo,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("first lookup"),
    )
    step = models.PositiveIntegerField(_("step"), null=True, blank=True)
    #: The first occurrence's detail, scrubbed and bounded like an attempt's error.
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    #: The URL path of the page (no query string).
    path = models.CharField(_("page path"), max_length=200, blank=True)
    #: The rendered page's HTML and the consulta answer's body, scrubbed and bounded.
    html = models.TextField(_("page HTML"), blank=True)
    body = models.TextField(_("answer body"), blank=True)
    #: A PNG of the page with the cédula's input masked, or None.
    screenshot = models.BinaryField(_("screenshot"), null=True, blank=True)

    class Meta:
        verbose_name = _("unexpected page")
        verbose_name_plural = _("unexpected pages")
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return self.signature


class CaptchaToken(models.Model):
    """One solve asked of the captcha-solving service, and what became of its token.

    ``census.captcha.pool`` (the attempt's side) and ``census.captcha.filler`` (the ticker's
    side) are its only writers. A row is a paid solve from ``ready`` on: the services charge
    for a delivered token, not for an unsolvable task (``failed``).
    """

    class State(models.TextChoices):
        #: Asked (``createTask``); the service is solving it.
        SOLVING = "solving", _("being solved")
        #: Delivered (paid); waits in the pool for a lookup.
        READY = "ready", _("ready")
        #: Taken by an attempt, which has not ended yet.
        HELD = "held", _("held by an attempt")
        #: Went out with a consulta (``refused``: the site did not accept it).
        USED = "used", _("used")
        #: Paid, never sent: it aged out in the pool, or its attempt ended before the submit
        #: and it was too old to go back.
        WASTED = "wasted", _("wasted")
        #: The service delivered no token (unsolvable, its own timeout): not paid.
        FAILED = "failed", _("not delivered")

    class Mode(models.TextChoices):
        #: Asked ahead by the pool, before any browser opened.
        POOL = "pool", _("pool")
        #: Solved inside an attempt, with its browser open (no pool, or a custom solver).
        ATTEMPT = "attempt", _("inside an attempt")

    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.SOLVING, db_index=True
    )
    mode = models.CharField(_("asked"), max_length=16, choices=Mode.choices, default=Mode.POOL)
    service = models.CharField(_("solving service"), max_length=32, blank=True)
    task_id = models.CharField(_("service task"), max_length=100, blank=True)
    site_key = models.CharField(_("site key"), max_length=100, blank=True)
    page_url = models.CharField(_("page URL"), max_length=300, blank=True)
    #: The token while it may still be used (``ready`` or ``held``); emptied after.
    token = models.TextField(_("token"), blank=True)
    #: Times on the database's clock (hosts' clocks differ; a token's life does not).
    asked_at = models.DateTimeField(_("asked at"), db_index=True)
    solved_at = models.DateTimeField(_("solved at"), null=True, blank=True)
    next_poll_at = models.DateTimeField(_("next poll"), null=True, blank=True)
    held_at = models.DateTimeField(_("held at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    #: The lookup that held it last, and at which step.
    lookup = models.ForeignKey(
        CedulaInfo,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="captcha_tokens",
        verbose_name=_("lookup"),
    )
    step = models.PositiveIntegerField(_("step"), null=True, blank=True)
    #: The site answered the consulta that carried it with a captcha error.
    refused = models.BooleanField(_("refused by the site"), default=False)
    #: Why it was wasted or not delivered.
    error = models.CharField(_("error"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("captcha solve")
        verbose_name_plural = _("captcha solves")
        ordering = ["-asked_at"]
        indexes = [models.Index(fields=["state", "solved_at"])]

    def __str__(self) -> str:
        return gettext("captcha solve %(id)s (%(state)s)") % {
            "id": self.pk,
            "state": self.get_state_display(),
        }

    @property
    def paid(self) -> bool:
        """Delivered by the service, so charged for."""
        return self.state not in (self.State.SOLVING, self.State.FAILED)


class CaptchaService(models.Model):
    """The solving service as every host sees it (one row): its breaker, the site key the
    pages carry, and the lease of the host that keeps the pool this moment."""

    name = models.CharField(_("name"), max_length=32, unique=True, default="default")
    #: The reCAPTCHA site key and page URL last seen on the census site's form.
    site_key = models.CharField(_("site key"), max_length=100, blank=True)
    page_url = models.CharField(_("page URL"), max_length=300, blank=True)
    #: While set and in the future, nothing is asked of the service; at that time it is
    #: probed (``getBalance``).
    open_until = models.DateTimeField(_("paused until"), null=True, blank=True)
    opened_at = models.DateTimeField(_("paused since"), null=True, blank=True)
    #: Why it is paused (``zero_balance``, ``bad_key``, ``unreachable``, ``daily_limit``...).
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    #: Failed probes since it was paused (the backoff doubles with each).
    failures = models.PositiveSmallIntegerField(_("failed probes"), default=0)
    lease_until = models.DateTimeField(_("pool kept until"), null=True, blank=True)
    lease_holder = models.CharField(_("pool kept by"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("captcha-solving service")
        verbose_name_plural = _("captcha-solving services")

    def __str__(self) -> str:
        return self.name
