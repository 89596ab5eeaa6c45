"""9. Real members' time to a final status, alone and behind a flood of sign-ups.

Three bursts, one after the other, each on a fresh simulator and fresh clusters (one qcluster
of 2 workers, real Chromium, the limit at ``limit`` seconds):

- ``alone``: ``members`` members register at once;
- ``verified``: ``flood`` sign-ups register first and, once the site is answering them, the
  members register: every sign-up counts as verified, which is what census did before
  ``CENSUS_IS_VERIFIED`` (and what a portal that does not check its sign-ups gets);
- ``unverified``: the same, the flood's sign-ups unverified (``CENSUS_IS_VERIFIED`` says no):
  their lookups run only in the site's spare capacity.

Per burst (``flood_<mode>_member_p50_s``, ``..._max_s``): seconds from the members'
registration to each member's final status. ``flood_unverified_vs_alone_ratio`` and
``flood_verified_vs_alone_ratio`` divide the medians by the members' alone.
``flood_unverified_ahead``: the flood's consultas between the members' registration and the
last of their own (the sharing lets at most the workers' started ones through). ``info``
has each burst's flood makespan (every flood lookup final: none is lost) and deferrals.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from django.db.models import Max
from django.test import override_settings

from benchmarks.harness import Clusters, cedula, wait_final
from benchmarks.rate import browser_env
from census.models import Attempt, CedulaInfo, Status
from census.testing.simulator import CensusSimulator, cedula_key

MODES = ("alone", "verified", "unverified")


def flooder(user: Any) -> bool:
    """``CENSUS_IS_VERIFIED`` of the ``unverified`` burst: the flood (first name "flood") is
    not verified."""
    return bool(user.first_name != "flood")


def run(params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    bursts = {mode: _burst(mode, params, clusters) for mode in MODES}
    alone = bursts["alone"]["member_p50_s"]
    figures: dict[str, Any] = {}
    for mode in MODES:
        figures[f"flood_{mode}_member_p50_s"] = bursts[mode].pop("member_p50_s")
        figures[f"flood_{mode}_member_max_s"] = bursts[mode].pop("member_max_s")
    for mode in ("verified", "unverified"):
        figures[f"flood_{mode}_vs_alone_ratio"] = (
            figures[f"flood_{mode}_member_p50_s"] / alone if alone else 0.0
        )
    figures["flood_unverified_ahead"] = bursts["unverified"].pop("ahead")
    bursts["verified"].pop("ahead")
    bursts["alone"].pop("ahead")
    figures["info"] = {"limit_s": params["limit"], "workers": 2, **bursts}
    return figures


def _register(numbers: list[str], **fields: Any) -> list[int]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    users = []
    for number in numbers:
        with transaction.atomic():
            users.append(get_user_model().objects.create_user(username=number, **fields))
    return list(CedulaInfo.objects.filter(user__in=users).values_list("pk", flat=True))


def _burst(mode: str, params: dict[str, Any], clusters: Clusters) -> dict[str, Any]:
    limit, count, members = params["limit"], params["flood"], params["members"]
    flood = [] if mode == "alone" else [cedula("10") for _ in range(count)]
    flood_keys = {cedula_key(n) for n in flood}
    with CensusSimulator(captcha="click") as site:
        clusters.start(workers=2, **browser_env(site, limit))
        clusters.wait_ready()
        verified = "census.eligibility.is_verified"
        if mode == "unverified":
            verified = "benchmarks.flood.flooder"
        with override_settings(CENSUS_IS_VERIFIED=verified):
            flood_ids = _register(flood, first_name="flood")
        started = time.time()
        deadline = time.monotonic() + 120
        while flood and time.monotonic() < deadline:
            if sum(r.cedula_key in flood_keys for r in site.consultas()) >= 2:
                break
            time.sleep(0.1)
        registered = time.time()
        numbers = [cedula("10") for _ in range(members)]
        member_ids = _register(numbers)
        wait_final(member_ids, timeout=(count + members) * 10 + 120, clusters=clusters)
        wait_final(flood_ids, timeout=(count + members) * 10 + 300, clusters=clusters)
        clusters.stop()
        consultas = site.consultas()
    member_keys = {cedula_key(n) for n in numbers}
    last_member = max(r.time for r in consultas if r.cedula_key in member_keys)
    ahead = sum(
        r.cedula_key in flood_keys and registered <= r.time <= last_member for r in consultas
    )
    times = [
        info.finished_at.timestamp() - registered
        for info in CedulaInfo.objects.filter(pk__in=member_ids)
    ]
    lookups = CedulaInfo.objects.filter(pk__in=[*member_ids, *flood_ids])
    flood_done = CedulaInfo.objects.filter(pk__in=flood_ids).aggregate(last=Max("finished_at"))
    deferrals = Attempt.objects.filter(lookup__in=lookups, outcome="deferred")
    return {
        "member_p50_s": round(statistics.median(times), 1),
        "member_max_s": round(max(times), 1),
        "ahead": ahead,
        "members": members,
        "flood": len(flood),
        "found": lookups.filter(status=Status.FOUND).count(),
        "consultas": len(consultas),
        "flood_makespan_s": round(flood_done["last"].timestamp() - started, 1)
        if flood_done["last"]
        else None,
        "deferrals": dict(Counter(_reason(e) for e in deferrals.values_list("error", flat=True))),
    }


def _reason(error: str) -> str:
    """``capacity: unverified`` / ``capacity: refresh``, else the reason before the colon."""
    parts = error.split(":", 2)
    return ":".join(parts[:2]) if parts[0] == "capacity" and len(parts) > 1 else parts[0]
