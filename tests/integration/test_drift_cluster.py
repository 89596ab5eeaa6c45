"""The site changes its answers mid-run (real qcluster, real Chromium, the simulator)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from census.models import Attempt, PageSnapshot, RateGate, Status
from tests import factories
from tests.clusters import browser_cluster, register, wait_until_final
from tests.evidence import assert_attempts_match_requests, assert_no_cedula_stored

# Parsing, signatures and the breaker's rules; the gate row under concurrency is shown on
# both databases by test_faults.py's blocking spell and by test_hosts.py.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.any_database,
]

#: Answers in no known shape in a row that open the breaker, and seconds between probes.
THRESHOLD = 3
PERIOD = 6.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORM_PATHS = ("/", "/consultar", "/consultar/")


@dataclass(frozen=True)
class Change:
    """A layout change: its signature, what in the page shows it, and how many probes a
    period may see (a changed form is seen at page load, before any slot is taken: each
    worker's browser due in the half-open moment sees it)."""

    layout: str
    signature: str
    marker: str
    probes_per_period: int

    def observations(self, site: Any) -> list[Any]:
        """The requests whose answer showed the change: the consultas, or the form loads."""
        if self.layout == "form_renamed":
            return [
                r
                for r in site.access_log
                if r.layout == self.layout and r.method == "GET" and r.path in FORM_PATHS
            ]
        return [r for r in site.consultas() if r.layout == self.layout]


CHANGES = [
    Change("renamed_field", "answer:missing_field:encontrado", "hallado", 1),
    Change("form_renamed", "page:missing_element:documento", "numeroDocumento", 2),
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.layout)
def test_a_layout_change_mid_run_opens_the_breaker_and_every_member_finishes_right(
    qcluster: Any, census_site: Any, change: Change
) -> None:
    """Two members are found; then the site changes (renames ``encontrado``, which the
    parser used to read as not found; or renames the form's input) and six register. Only
    the first THRESHOLD - 1 unexpected answers are charged; the breaker opens once, probes
    fail without charge, and once the layout is back a probe closes it and all six are
    found. One snapshot for the signature, counting every unexpected answer; attempts match
    the site's access log; no cédula stored anywhere."""
    cluster = browser_cluster(
        qcluster,
        census_site,
        CENSUS_SITE_CHANGED_AFTER=str(THRESHOLD),
        CENSUS_SITE_PROBE_SECONDS=str(PERIOD),
    )
    before_numbers = [factories.cedula("10") for _ in range(2)]
    before = wait_until_final(register(before_numbers), cluster, timeout=120)
    assert {i.status for i in before} == {Status.FOUND}

    census_site.change_layout(change.layout)
    numbers = [factories.cedula("10") for _ in range(6)]
    during = register(numbers)
    deadline = time.monotonic() + 180
    # Until the breaker has opened and a probe met the changed layout after it.
    probed: list[Any] = []
    while time.monotonic() < deadline:
        row = RateGate.objects.filter(name="census", site_changed_at__isnull=False).first()
        if row is not None and row.site_changed_at is not None:
            since = row.site_changed_at.timestamp() + 0.5
            probed = [r for r in change.observations(census_site) if r.time > since]
            if probed:
                break
        time.sleep(0.2)
    assert probed, cluster.output()[-3000:]
    census_site.change_layout(None)
    restored = time.time()

    infos = wait_until_final(during, cluster, timeout=240)
    assert [i.status for i in infos] == [Status.FOUND] * 6, [i.raw_response for i in infos]

    changed = change.observations(census_site)
    charged = Attempt.objects.filter(lookup_id__in=during, outcome="unexpected_page").count()
    assert charged == THRESHOLD - 1
    assert sum(i.retry_count for i in infos) == THRESHOLD - 1
    assert max(i.retry_count for i in infos) <= 1
    assert_attempts_match_requests(census_site, [*before, *infos])

    [snapshot] = PageSnapshot.objects.all()
    assert snapshot.signature == change.signature
    assert snapshot.count == len(changed)  # every unexpected answer counted, one page kept
    assert bytes(snapshot.screenshot or b"").startswith(PNG_MAGIC)
    assert change.marker in snapshot.body + snapshot.html
    assert_no_cedula_stored([*before_numbers, *numbers], cluster)

    names = [e["event"] for e in cluster.events()]
    assert names.count("site_changed") == 1 and names.count("site_recovered") == 1
    opened_at = next(
        datetime.fromisoformat(e["timestamp"]).timestamp()
        for e in cluster.events()
        if e["event"] == "site_changed"
    )
    # While the site counted as changed: the probes of each period, plus what was already
    # in flight when it opened (one per other worker).
    inside = [r for r in changed if opened_at + 0.2 < r.time < restored]
    assert len(inside) <= change.probes_per_period * ((restored - opened_at) / PERIOD + 1) + 1
    row = RateGate.objects.get(name="census")
    assert (row.site_changed_at, row.unexpected_streak) == (None, 0)
    attempts = Attempt.objects.filter(lookup_id__in=during)
    consultas = census_site.consultas()
    print(
        f"\nDRIFT {change.layout}: registered_during={len(infos)} "
        f"attempts_charged_unexpected={charged} "
        f"attempts_counted={attempts.exclude(outcome='deferred').count()} "
        f"deferred={attempts.filter(outcome='deferred').count()} "
        f"observed_during_change={len(changed)} "
        f"consultas_during_change={sum(r.layout == change.layout for r in consultas)} "
        f"requests_total={len(consultas)} "
        f"probes_while_changed={len(inside)} snapshots={PageSnapshot.objects.count()} "
        f"changed_for_s={restored - opened_at:.1f}"
    )
