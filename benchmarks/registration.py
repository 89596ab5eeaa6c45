"""1. What census adds to a registration: the ``post_save`` receiver connected vs disconnected.

Members are created in alternating batches, in this process, through the ORM (one
transaction each, as the portal's view does) and through the example portal's registration
view (Django's test Client). With the receiver, each registration also creates the lookup
and, on commit, queues its first attempt on the broker and logs its event. Ratio of the
median per-registration times. No qcluster runs: queued attempts just wait.

On SQLite an idle second connection stays open meanwhile, as a running qcluster keeps the
database open: without one, every close of the last connection (Django-Q2's ORM broker
closes the caller's connection on each enqueue when ``CONN_MAX_AGE`` is 0) would also
checkpoint the WAL, which a deployment seldom pays.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.test import Client
from django.urls import reverse

from benchmarks.harness import Clusters, cedula
from census import receivers

PASSWORD = "una-clave-bastante-larga"


def _receiver(connected: bool) -> None:
    if connected:
        receivers.connect()
    else:
        post_save.disconnect(sender=settings.AUTH_USER_MODEL, dispatch_uid="census.user_saved")


def _through_orm() -> None:
    with transaction.atomic():
        get_user_model().objects.create_user(username=cedula())


def _through_view() -> None:
    data = {
        "username": cedula(),
        "first_name": "Ana",
        "last_name": "Bench",
        "email": "ana@example.org",
    }
    response = Client().post(
        reverse("portal:register"), {**data, "password1": PASSWORD, "password2": PASSWORD}
    )
    if response.status_code != 302:
        raise RuntimeError(f"registration refused: {response.status_code}")


def _batch(register: Callable[[], None], size: int) -> list[float]:
    times = []
    for _ in range(size):
        started = time.perf_counter()
        register()
        times.append(time.perf_counter() - started)
    return times


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    rounds, size = params["rounds"], params["batch"]
    other = sqlite3.connect(":memory:")
    if connection.vendor == "sqlite":
        other = sqlite3.connect(connection.settings_dict["NAME"])
        other.execute("SELECT count(*) FROM django_migrations").fetchall()
    paths = {"orm": _through_orm, "view": _through_view}
    times: dict[tuple[str, bool], list[float]] = {(p, c): [] for p in paths for c in (True, False)}
    for round_ in range(rounds + 1):  # round 0 warms up and is not counted
        # Swap the order every round so drift over the run hits both sides alike.
        order = (True, False) if round_ % 2 else (False, True)
        for path, register in paths.items():
            for connected in order:
                _receiver(connected)
                measured = _batch(register, size)
                if round_:
                    times[path, connected] += measured
    _receiver(True)
    other.close()

    medians = {f"{p}_{'on' if c else 'off'}": statistics.median(t) for (p, c), t in times.items()}
    return {
        "registration_overhead_ratio": medians["orm_on"] / medians["orm_off"],
        "registration_view_overhead_ratio": medians["view_on"] / medians["view_off"],
        "info": {
            "registrations_per_side": rounds * size,
            **{f"median_{k}_ms": round(v * 1000, 2) for k, v in medians.items()},
        },
    }
