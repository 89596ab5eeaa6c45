"""Every Django-Q2 call of the app: queue an attempt, schedule one, see what is waiting, and
the schedules of bulk runs (``census-bulk-<id>``) and of the daily re-check.

Tasks carry ``(lookup_id, step)`` only, named ``census-lookup-<id>-step-<n>`` in group
``census-lookup``; their hook is ``census.q2.hooks.attempt_finished``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage
from django_q.tasks import async_task, schedule

from census import events
from census.conf import settings
from census.events import Event

#: The attempt task and its result hook, by the paths queued from 0.2.0 on.
TASK_FUNC = "census.lookup.attempt.run_attempt"
HOOK = "census.q2.hooks.attempt_finished"
#: The paths of tasks and schedules queued by earlier versions: they still run
#: (``census.compat``), and are counted as census's own wherever the new ones are.
OLD_TASK_FUNC = "census.pipeline.run_attempt"
OLD_HOOK = "census.hooks.attempt_finished"
GROUP = "census-lookup"


def task_name(lookup_id: int, step: int) -> str:
    """Readable in qinfo, qmonitor and the admin: which lookup and step, never the cédula."""
    return f"census-lookup-{lookup_id}-step-{step}"


def _q_options(lookup_id: int, step: int) -> dict[str, Any]:
    return {
        "task_name": task_name(lookup_id, step),
        "group": GROUP,
        "hook": HOOK,
        # Our retries replace the broker's: a failed attempt must not be delivered again.
        "ack_failure": True,
        # Hooks only fire for saved results; keep them even when Q_CLUSTER save_limit < 0.
        "save": True,
        "timeout": settings.task_timeout,
    }


def enqueue_attempt(lookup_id: int, step: int) -> str:
    """Queue ``step`` of a lookup now; returns the Django-Q2 task id.

    Called in autocommit mode (on commit of a registration), the ORM broker would first close
    the caller's database connection (``close_old_connections``, which with the default
    ``CONN_MAX_AGE = 0`` closes it), and the registration's request would reconnect for its
    next query: a transaction of our own around the insert keeps the connection.
    """
    options = _q_options(lookup_id, step)
    if Conf.ORM and transaction.get_autocommit(using=Conf.ORM):  # the ORM broker, no atomic
        with transaction.atomic(using=Conf.ORM):
            return str(async_task(TASK_FUNC, lookup_id, step, q_options=options))
    return str(async_task(TASK_FUNC, lookup_id, step, q_options=options))


def schedule_attempt(lookup_id: int, step: int, due: datetime) -> Schedule:
    """Record the next attempt as a ONCE schedule (shown in the admin's Scheduled tasks)."""
    # Only literals: Django-Q2 stores args/kwargs as text and reads them with literal_eval.
    return schedule(
        TASK_FUNC,
        lookup_id,
        step,
        name=task_name(lookup_id, step),
        hook=HOOK,
        schedule_type=Schedule.ONCE,
        next_run=due,
        q_options=_q_options(lookup_id, step),
    )


def advance_attempt(lookup_id: int, step: int, due: datetime) -> bool:
    """Move a scheduled attempt's run to ``due`` (if it was later); True if one moved."""
    moved = Schedule.objects.filter(name=task_name(lookup_id, step), next_run__gt=due).update(
        next_run=due
    )
    return bool(moved)


def is_scheduled(lookup_id: int, step: int) -> bool:
    return Schedule.objects.filter(name=task_name(lookup_id, step)).exists()


def broker_lists_taken_tasks() -> bool:
    """True for the ORM broker, whose queue keeps a task until it is done."""
    return type(get_broker()).__name__ == "ORM"


def queued_packages() -> list[dict[str, Any]] | None:
    """The task packages waiting in the broker (ORM or Redis); None when it cannot tell.

    The ORM broker keeps a task's row until it is acknowledged, so this includes tasks a
    cluster has taken but not finished. The Redis broker forgets a message once a cluster
    takes it: tasks held in a cluster's memory are not listed.
    """
    broker = get_broker()
    if type(broker).__name__ == "ORM":
        payloads: Any = (
            OrmQ.objects.using(Conf.ORM)
            .filter(key=broker.list_key)
            .values_list("payload", flat=True)
        )
    elif hasattr(getattr(broker, "connection", None), "lrange"):
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
    else:
        return None
    packages = []
    for payload in payloads:
        try:
            task = SignedPackage.loads(payload)
        except Exception:  # a foreign or damaged payload names no lookup of ours
            continue
        if isinstance(task, dict):
            packages.append(task)
    return packages


def queued_task_names(prefix: str = "census-lookup-") -> set[str] | None:
    """Names of census tasks (lookups, or ``prefix``) waiting in the broker; None when it
    cannot tell."""
    packages = queued_packages()
    if packages is None:
        return None
    return {str(task["name"]) for task in packages if str(task.get("name", "")).startswith(prefix)}


def queue_now(lookup_id: int, step: int) -> bool:
    """Queue an attempt; on failure log it (the sweeper resumes the lookup) and return False."""
    try:
        enqueue_attempt(lookup_id, step)
    except Exception:
        events.emit(Event.ENQUEUE_FAILED, lookup_id=lookup_id, step=step)
        return False
    return True


# -- follow-ups -----------------------------------------------------------------------------

FOLLOW_UP_FUNC = "census.followups.run_follow_up"
FOLLOW_UP_GROUP = "census-followup"
#: The tasks that claim work by their Django-Q2 task id (``census.q2.context``).
CLAIMING_FUNCS = frozenset({TASK_FUNC, OLD_TASK_FUNC, FOLLOW_UP_FUNC})


def follow_up_name(lookup_id: int, step: int, position: int, name: str, tries: int) -> str:
    """``census-followup-<lookup>-<step>.<position>-<name>``, ``-try-<n>`` from the second
    try: which lookup, which chain and link, never the cédula (Django-Q2 cuts it to 100)."""
    base = f"census-followup-{lookup_id}-{step}.{position}-{name}"
    return (base if tries <= 1 else f"{base}-try-{tries}")[:100]


def _follow_up_options(task_name: str) -> dict[str, Any]:
    return {
        "task_name": task_name,
        "group": FOLLOW_UP_GROUP,
        "ack_failure": True,  # census retries a follow-up on its own ladder
        "timeout": settings.follow_up_timeout,
    }


def enqueue_follow_up(follow_up_id: int, task_name: str) -> str:
    """Queue a follow-up's try now (see ``enqueue_attempt`` on the ORM broker's connection)."""
    options = _follow_up_options(task_name)
    if Conf.ORM and transaction.get_autocommit(using=Conf.ORM):
        with transaction.atomic(using=Conf.ORM):
            return str(async_task(FOLLOW_UP_FUNC, follow_up_id, q_options=options))
    return str(async_task(FOLLOW_UP_FUNC, follow_up_id, q_options=options))


def schedule_follow_up(follow_up_id: int, task_name: str, due: datetime) -> Schedule:
    """A follow-up's next try as a ONCE schedule."""
    return schedule(
        FOLLOW_UP_FUNC,
        follow_up_id,
        name=task_name,
        schedule_type=Schedule.ONCE,
        next_run=due,
        q_options=_follow_up_options(task_name),
    )


def follow_up_is_scheduled(task_name: str) -> bool:
    return Schedule.objects.filter(name=task_name).exists()


# -- the task table -------------------------------------------------------------------------

#: Task rows deleted per statement: short locks on a large table.
DELETE_BATCH = 500


def delete_succeeded_tasks(*, before: datetime, keep: set[str]) -> int:
    """Delete census's successful task rows (attempts, follow-ups) that stopped before
    ``before``, but those named in ``keep``; returns how many. Other apps' rows and failed
    ones are never touched."""
    rows = (
        Task.objects.filter(func__in=CLAIMING_FUNCS, success=True, stopped__lt=before)
        .exclude(name__in=keep)
        .order_by("stopped")
    )
    deleted = 0
    while batch := list(rows.values_list("id", flat=True)[:DELETE_BATCH]):
        deleted += Task.objects.filter(id__in=batch).delete()[0]
    return deleted


# -- bulk runs and re-checks ----------------------------------------------------------------

#: The package's names (``census.bulk`` re-exports them from ``feeder`` and ``recheck``):
#: the paths every schedule was stored with, before and after census.bulk became a package.
FEED_FUNC = "census.bulk.feed_scheduled"
RECHECK_FUNC = "census.bulk.start_recheck"
RECHECK_SCHEDULE = "census-recheck"


def feeder_name(run_id: int) -> str:
    return f"census-bulk-{run_id}"


def schedule_feeder(run_id: int) -> Schedule:
    """A background run's feeder: every minute until the run ends (shown in the admin)."""
    feeder, _ = Schedule.objects.update_or_create(
        name=feeder_name(run_id),
        defaults={
            "func": FEED_FUNC,
            "args": repr((run_id,)),
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )
    return feeder


def remove_feeder(run_id: int) -> None:
    Schedule.objects.filter(name=feeder_name(run_id)).delete()


def set_recheck_schedule(next_run: datetime | None) -> bool:
    """Install the daily re-check schedule at ``next_run``, or remove it (None).

    Returns True when it changed anything. An installed schedule keeps its own next run.
    """
    if next_run is None:
        deleted, _ = Schedule.objects.filter(name=RECHECK_SCHEDULE).delete()
        return bool(deleted)
    _, created = Schedule.objects.get_or_create(
        name=RECHECK_SCHEDULE,
        defaults={
            "func": RECHECK_FUNC,
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": next_run,
        },
    )
    return created
