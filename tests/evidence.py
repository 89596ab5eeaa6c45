"""Evidence of what really happened: the site's access log, the database and the JSON log.

Shared by the fault-injection and scale-out suites, which compare all three.
"""

from __future__ import annotations

import base64
import contextlib
import pickle
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from census.cedula import InvalidCedula, normalize
from census.models import Attempt, CedulaInfo
from census.testing.simulator import CensusSimulator, cedula_key
from tests.clusters import ClusterProcess

FINAL_EVENTS = {"found", "not_found", "cancelled", "error"}

#: What the site-side stamps may lose against the true sends: the simulator stamps a request
#: when its handler thread starts (after the request line and headers are read), so two
#: stamps can be closer than the two sends by the difference of their handling delays. The
#: gate's own failure modes are far larger (a host 2 s fast sent requests ~2 s early; a late
#: send left ~0.2 s less than the limit).
STAMP_ALLOWANCE = 0.02


def consultas_by_member(site: CensusSimulator) -> Counter[str]:
    return Counter(record.cedula_key for record in site.consultas())


def canonical(username: str) -> str | None:
    try:
        return normalize(username)
    except InvalidCedula:
        return None


def key_of(username: str) -> str | None:
    try:
        normalize(username)
    except InvalidCedula:
        return None
    return cedula_key(username)


def assert_attempts_match_requests(site: CensusSimulator, infos: list[CedulaInfo]) -> None:
    """Every attempt that says it sent a consulta matches one in the access log, and back."""
    received = consultas_by_member(site)
    for info in infos:
        sent = Attempt.objects.filter(lookup=info, sent=True).count()
        key = key_of(info.user.username)
        requests = received.get(key, 0) if key else 0
        assert requests == sent, (info.pk, info.user.username[-3:], requests, sent)
    assert sum(received.values()) == Attempt.objects.filter(sent=True).count()


def send_lags(site: CensusSimulator) -> list[float]:
    """Seconds from each attempt's confirmed send (``sent_at``) to its request's arrival at
    the site, member by member in order (meaningful when both share the host's clock)."""
    arrivals: dict[str, list[float]] = {}
    for record in site.consultas():
        arrivals.setdefault(record.cedula_key, []).append(record.time)
    lags = []
    for info in CedulaInfo.objects.select_related("user"):
        key = key_of(info.user.username)
        sends = Attempt.objects.filter(lookup=info, sent_at__isnull=False).order_by("step")
        for attempt, arrived in zip(sends, arrivals.get(key or "", []), strict=False):
            assert attempt.sent_at is not None
            lags.append(arrived - attempt.sent_at.timestamp())
    return lags


def assert_nothing_sent_while_open(
    cluster: ClusterProcess, site: CensusSimulator, because: str
) -> list[dict[str, Any]]:
    """No consulta reached the site inside any pause the cluster's breaker opened (0.2 s
    after its opening, for the requests already on the wire); returns the openings."""
    opened = [e for e in cluster.events() if e["event"] == "breaker_opened"]
    assert opened, because
    for event in opened:
        start = datetime.fromisoformat(event["timestamp"]).timestamp() + 0.2
        until = datetime.fromisoformat(event["until"]).timestamp()
        inside = [r for r in site.consultas() if start < r.time < until]
        assert inside == [], f"{len(inside)} consultas while the breaker was open"
    return opened


def final_events(cluster: ClusterProcess) -> Counter[int]:
    """How many times the JSON log says each lookup reached a final status."""
    return Counter(
        e["lookup_id"]
        for e in cluster.events()
        if e["event"] == "lookup_status_changed" and e.get("to_status") in FINAL_EVENTS
    )


def _decoded_rows() -> Iterator[tuple[str, str]]:
    """Every value of every table but the user table, Django-Q2's pickles decoded."""
    user_model = get_user_model()
    for model in apps.get_models():
        if model is user_model:
            continue  # the cédula is the username: by design, the one place it lives
        for row in model.objects.all():
            for field in model._meta.concrete_fields:
                value = getattr(row, field.attname)
                if isinstance(row, OrmQ) and field.name == "payload":
                    value = SignedPackage.loads(value)
                elif model._meta.db_table == "census_cache" and field.name == "value":
                    with contextlib.suppress(Exception):
                        value = pickle.loads(base64.b64decode(value))
                if isinstance(value, float):
                    continue  # 31.1000000001 s is a duration, not a cédula
                yield f"{model._meta.db_table}.{field.name}", repr(value)


def assert_no_cedula_stored(numbers: list[str], cluster: ClusterProcess) -> None:
    """No table (but the user's), no JSON log line and no cluster output holds a full cédula."""
    rows = list(_decoded_rows())
    # A cluster that logged nothing has no JSON log file: nothing there to hold a cédula.
    log = cluster.log_path.read_text() if cluster.log_path.exists() else ""
    logs = log + cluster.output()
    for number in numbers:
        digits = number.strip()
        if len(digits) < 4:
            continue
        where = sorted({column for column, text in rows if digits in text})
        assert not where, f"cédula ending {digits[-3:]} stored in {where}"
        assert digits not in logs, f"cédula ending {digits[-3:]} in the logs"


def summary(name: str, infos: list[CedulaInfo], site: CensusSimulator, **extra: Any) -> None:
    """One line of figures for the closing note (shown with ``-s``).

    ``time_to_final_max_s`` is ``none`` when no lookup has finished (none has a time to final).
    """
    ages = sorted((i.finished_at - i.created_at).total_seconds() for i in infos if i.finished_at)
    slowest = f"{ages[-1]:.1f}" if ages else "none"
    counted = Attempt.objects.exclude(outcome="deferred").count()
    deferred = Attempt.objects.filter(outcome="deferred").count()
    print(
        f"\nFAULTS {name}: lookups={len(infos)} attempts={counted} deferred={deferred} "
        f"consultas={len(site.consultas())} statuses={dict(Counter(i.status for i in infos))} "
        f"time_to_final_max_s={slowest} " + " ".join(f"{k}={v}" for k, v in extra.items())
    )
