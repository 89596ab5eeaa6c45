"""The site-changed breaker and the snapshots of answers in no known shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from structlog.testing import capture_logs

from census.gate import rules
from census.gate.protocol import Closed, Slot
from census.gate.rules import BreakerPhase, GatePolicy, GateState
from census.maintenance import upkeep
from census.models import Attempt, PageSnapshot, RateGate, Status
from census.observability import snapshots
from census.outcomes import Outcome
from census.scraper.base import SNAPSHOT_PNG_BYTES, LookupResult, Snapshot
from census.scraper.parser import VISIBLE_TEXT_ONLY
from census.testing.fake import SCRIPTED_SIGNATURE
from tests.driving import run_and_hook

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
POLICY = GatePolicy(interval=5.0, site_changed_after=3, site_probe_every=300.0)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def unexpected(state: GateState, when: datetime, *, probe: bool = False, sig: str = "a:b"):
    return rules.record(
        state, when, POLICY, blocked=False, answered=False, probe=probe, unexpected=sig
    )


def answered(state: GateState, when: datetime, *, probe: bool = False):
    return rules.record(state, when, POLICY, blocked=False, answered=True, probe=probe)


# -- the pure gate ----------------------------------------------------------------------------


def test_unexpected_answers_in_a_row_open_the_breaker_with_their_signature() -> None:
    """Two do not (and are not excused), the third opens it for a probe period; admit then
    refuses with reason site_changed, and the wait is what the scraper defers by."""
    state = GateState(next_allowed_at=at(-30))
    for n in (1, 2):
        state, change = unexpected(state, at(n))
        assert change is None and state.unexpected_streak == n
        assert rules.site_changed_wait(state, at(n)) is None  # charged as usual
    state, change = unexpected(state, at(3), sig="answer:missing_field:encontrado")
    assert change == "site_changed"
    assert state.site_signature == "answer:missing_field:encontrado"
    assert state.breaker_until == at(303) and state.phase(at(3)) is BreakerPhase.OPEN
    assert rules.site_changed_wait(state, at(3)) == 300.0
    admission, _ = rules.admit(state, at(10), POLICY, deadline=None)
    assert admission == Closed(at(303), "site_changed")


def test_an_answer_in_a_known_shape_resets_the_count() -> None:
    """Unexpected, found, unexpected, unexpected: never three in a row, never open."""
    state = GateState(next_allowed_at=at(-30))
    state, _ = unexpected(state, at(1))
    state, _ = answered(state, at(2))
    assert state.unexpected_streak == 0
    state, _ = unexpected(state, at(3))
    state, _ = unexpected(state, at(4))
    assert state.site_changed_at is None and state.phase(at(4)) is BreakerPhase.CLOSED


def test_one_probe_per_period_until_one_is_answered_in_a_known_shape() -> None:
    """After the period exactly one probe goes; an unexpected probe keeps the breaker open
    one more period; an answered one closes it and forgets the signature."""
    state = GateState(next_allowed_at=at(-30), unexpected_streak=2)
    state, _ = unexpected(state, at(0))
    probe, state = rules.admit(state, at(301), POLICY, deadline=None)
    assert isinstance(probe, Slot) and probe.probe
    other, _ = rules.admit(state, at(302), POLICY, deadline=None)
    assert isinstance(other, Closed) and other.reason == "probe_in_flight"
    state, change = unexpected(state, at(305), probe=True)
    assert change is None and state.breaker_until == at(605)
    assert rules.site_changed_wait(state, at(305)) == 300.0  # the probe is not charged
    probe, state = rules.admit(state, at(606), POLICY, deadline=None)
    assert isinstance(probe, Slot) and probe.probe
    state, change = answered(state, at(607), probe=True)
    assert change == "site_recovered"
    assert (state.breaker_until, state.site_changed_at, state.site_signature) == (None, None, "")
    assert state.unexpected_streak == 0
    assert isinstance(rules.admit(state, at(608), POLICY, deadline=None)[0], Slot)


def test_a_blocked_probe_hands_over_to_the_block_pause() -> None:
    """The site blocks rather than answers: the block breaker's pause, reason breaker_open."""
    state = GateState(next_allowed_at=at(-30), unexpected_streak=2)
    state, _ = unexpected(state, at(0))
    _, state = rules.admit(state, at(301), POLICY, deadline=None)
    state, change = rules.record(state, at(302), POLICY, blocked=True, answered=False, probe=True)
    assert change == "opened" and state.site_changed_at is None
    admission, _ = rules.admit(state, at(303), POLICY, deadline=None)
    assert isinstance(admission, Closed) and admission.reason == "breaker_open"


def test_a_threshold_of_zero_never_opens() -> None:
    """CENSUS_SITE_CHANGED_AFTER = 0 turns the site-changed breaker off."""
    policy = GatePolicy(interval=5.0, site_changed_after=0)
    state = GateState(next_allowed_at=at(-30))
    for n in range(20):
        state, change = rules.record(
            state, at(n), policy, blocked=False, answered=False, probe=False, unexpected="x"
        )
        assert change is None
    assert state.site_changed_at is None


# -- the pipeline -----------------------------------------------------------------------------


def _expire_breaker() -> None:
    RateGate.objects.filter(name="census").update(
        breaker_until=timezone.now() - timedelta(seconds=1)
    )


def _run(info: Any, capture: Any) -> Any:
    info.refresh_from_db()
    with capture(execute=True):
        run_and_hook(info.pk, info.step, task_id=f"t{info.pk}s{info.step}")
    info.refresh_from_db()
    return info


@pytest.mark.django_db
def test_members_keep_their_budgets_while_the_site_counts_as_changed(
    new_lookup: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Threshold 2: the first unexpected answer is charged, the second opens the breaker and
    is not; a lookup arriving meanwhile sends nothing; a failed probe is not charged; an
    answered probe closes it and everyone finishes found, budgets intact."""
    settings.CENSUS_SITE_CHANGED_AFTER = 2
    settings.CENSUS_SITE_PROBE_SECONDS = 300
    capture = django_capture_on_commit_callbacks
    a = new_lookup("unexpected_page", "unexpected_page", "found")
    b = new_lookup("unexpected_page", "found")
    c = new_lookup("found")
    with capture_logs() as logs:
        a = _run(a, capture)
        assert (a.status, a.retry_count) == (Status.RETRYING, 1)  # charged: one glitch
        b = _run(b, capture)
        assert (b.status, b.retry_count) == (Status.RETRYING, 0)  # opened it: not charged
        c = _run(c, capture)
        assert (c.status, c.retry_count) == (Status.RETRYING, 0)
        assert not Attempt.objects.get(lookup=c, step=1).sent
        assert Attempt.objects.get(lookup=c, step=1).error.startswith("site_changed:")
        _expire_breaker()
        a = _run(a, capture)  # the probe, still unexpected: deferred, not charged
        assert (a.status, a.retry_count) == (Status.RETRYING, 1)
        assert RateGate.objects.get(name="census").site_changed_at is not None
        _expire_breaker()
        a = _run(a, capture)  # the probe answers found: the breaker closes
        b, c = _run(b, capture), _run(c, capture)
    assert [(x.status, x.retry_count) for x in (a, b, c)] == [(Status.FOUND, 1)] + [
        (Status.FOUND, 0)
    ] * 2
    names = [e["event"] for e in logs]
    assert names.count("site_changed") == 1 and names.count("site_recovered") == 1
    changed = next(e for e in logs if e["event"] == "site_changed")
    assert (changed["signature"], changed["count"]) == (SCRIPTED_SIGNATURE, 2)
    row = RateGate.objects.get(name="census")
    assert (row.site_changed_at, row.site_signature, row.unexpected_streak) == (None, "", 0)
    assert PageSnapshot.objects.get().count == 3  # a twice, b once: one row


@pytest.mark.django_db
def test_a_lookup_deferred_past_the_bound_ends_in_error_saying_the_site_changed(
    new_lookup: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """CENSUS_MAX_DEFER_SECONDS bounds this deferral as any other; the error names the
    change, not a block."""
    settings.CENSUS_SITE_CHANGED_AFTER = 1
    settings.CENSUS_SITE_PROBE_SECONDS = 600
    settings.CENSUS_MAX_DEFER_SECONDS = 100
    info = _run(new_lookup("unexpected_page"), django_capture_on_commit_callbacks)
    assert info.status == Status.ERROR
    assert info.final_reason == Outcome.UNEXPECTED_PAGE
    assert "pages had changed" in info.raw_response


# -- snapshots --------------------------------------------------------------------------------


def _result(signature: str, html: str = "", png: bytes | None = PNG) -> LookupResult:
    return LookupResult(
        outcome=Outcome.UNEXPECTED_PAGE,
        detail="answer without ok",
        meta={"signature": signature},
        snapshot=Snapshot(html=html, body='{"respuesta": {}}', png=png, path="/consultar/"),
    )


@pytest.mark.django_db
def test_the_first_page_of_each_signature_is_kept_and_the_rest_counted() -> None:
    """One row per signature; the page is the first one's, scrubbed of the stored value
    (with its separators) even if the scraper missed it; later ones only count."""
    first = _result("answer:missing_field:ok", html="<p>CC 1.012.345.678</p>")
    assert snapshots.keep(first, lookup_id=None, step=1, cedula="1012345678")
    later = _result("answer:missing_field:ok", html="<p>other</p>")
    assert not snapshots.keep(later, lookup_id=None, step=2, cedula="1012345678")
    assert snapshots.keep(
        _result("page:missing_element:documento"), lookup_id=None, step=1, cedula="1012345678"
    )
    row = PageSnapshot.objects.get(signature="answer:missing_field:ok")
    assert row.count == 2 and "1.012.345.678" not in row.html and "other" not in row.html
    assert bytes(row.screenshot) == PNG
    assert PageSnapshot.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("html", "kept"),
    [
        ("<td>1&nbsp;012&nbsp;345&nbsp;678</td>", "<td>*******678</td>"),
        ("<td>1&#46;012&#46;345&#46;678</td>", "<td>*******678</td>"),
        ("<td><b>1.012</b>.345.678</td>", "<td><b>*******678</td>"),
        ("<td>1. 012. 345. 678</td>", "<td>*******678</td>"),
        ("<td>CC &#49;&#48;12345678</td>", f"{VISIBLE_TEXT_ONLY}\nCC *******678"),
    ],
)
def test_a_kept_page_has_the_number_masked_whatever_its_markup(html: str, kept: str) -> None:
    """The stored HTML masks the number written with references, tags or any mix of spaces
    and dots; a page whose markup still hides it is kept as its visible text only."""
    snapshots.keep(_result("a:markup", html=html), lookup_id=None, step=1, cedula="1012345678")
    assert PageSnapshot.objects.get().html == kept


@pytest.mark.django_db
def test_snapshots_are_bounded_and_pruned() -> None:
    """A screenshot over the bound (or not a PNG) is dropped, the HTML kept; a signature not
    seen for CENSUS_SNAPSHOT_RETENTION is deleted by the hourly upkeep."""
    big = _result("a:big", html="x", png=PNG + b"\0" * SNAPSHOT_PNG_BYTES)
    snapshots.keep(big, lookup_id=None, step=1, cedula="1012345678")
    snapshots.keep(_result("a:jpeg", png=b"\xff\xd8\xff"), lookup_id=None, step=1, cedula="")
    assert [bool(r.screenshot) for r in PageSnapshot.objects.order_by("signature")] == [
        False,
        False,
    ]
    PageSnapshot.objects.filter(signature="a:big").update(
        last_seen_at=timezone.now() - timedelta(days=15)
    )
    assert upkeep.prune() >= 1
    assert list(PageSnapshot.objects.values_list("signature", flat=True)) == ["a:jpeg"]
