"""census.lookup.status: the only writer of CedulaInfo.status."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from census.lookup.status import ALLOWED, TransitionRefused, locked, transition
from census.models import CedulaInfo, Status
from tests import factories

pytestmark = pytest.mark.django_db

ALL_MOVES = [(a, b) for a in Status for b in Status]


def lookup_in(status: Status) -> CedulaInfo:
    info = CedulaInfo.objects.get(user=factories.member())
    CedulaInfo.objects.filter(pk=info.pk).update(status=status)
    info.refresh_from_db()
    return info


@pytest.mark.parametrize(("source", "target"), ALL_MOVES)
def test_only_allowed_moves_happen(source: Status, target: Status) -> None:
    """PENDING -> SCRAPING -> (RETRYING -> SCRAPING)* -> final; final -> PENDING on refresh."""
    info = lookup_in(source)
    with locked(info.pk) as row:
        assert row is not None
        if target in ALLOWED[source]:
            transition(row, target, step=row.step)
        else:
            with pytest.raises(TransitionRefused, match="not allowed"):
                transition(row, target, step=row.step)
    info.refresh_from_db()
    assert info.status == (target if target in ALLOWED[source] else source)


def test_allowed_table_is_the_documented_machine() -> None:
    """The table says exactly what the documented state machine says (README, how-it-works)."""
    finals = {Status.FOUND, Status.NOT_FOUND, Status.CANCELLED, Status.ERROR}
    assert ALLOWED[Status.PENDING] == {Status.SCRAPING}
    assert ALLOWED[Status.SCRAPING] == finals | {Status.RETRYING}
    assert ALLOWED[Status.RETRYING] == {Status.SCRAPING}
    assert all(ALLOWED[f] == {Status.PENDING} for f in finals)


def test_stale_attempt_is_refused() -> None:
    """A move for an attempt number that is not current is refused and saves nothing."""
    info = lookup_in(Status.PENDING)
    with locked(info.pk) as row, pytest.raises(TransitionRefused, match="stale"):
        transition(row, Status.SCRAPING, step=row.step + 1)
    info.refresh_from_db()
    assert info.status == Status.PENDING


def test_event_is_emitted_after_commit_only(django_capture_on_commit_callbacks: Any) -> None:
    """The lookup_status_changed event waits for the commit, with the documented fields."""
    info = lookup_in(Status.PENDING)
    with capture_logs() as logs:
        with (
            django_capture_on_commit_callbacks(execute=False) as callbacks,
            locked(info.pk) as row,
        ):
            transition(row, Status.SCRAPING, step=1)
        assert logs == []
        for callback in callbacks:
            callback()
    assert logs == [
        {
            "event": "lookup_status_changed",
            "log_level": "info",
            "lookup_id": info.pk,
            "user_id": info.user_id,
            "step": 1,
            "retry_count": 0,
            "from_status": "pending",
            "to_status": "scraping",
        }
    ]


def test_final_status_stamps_finished_at() -> None:
    """Reaching a final status records when; going back to PENDING clears it."""
    info = lookup_in(Status.SCRAPING)
    with locked(info.pk) as row:
        transition(row, Status.FOUND, step=1)
    info.refresh_from_db()
    assert info.finished_at is not None
    with locked(info.pk) as row:
        transition(row, Status.PENDING, step=1)
    info.refresh_from_db()
    assert info.finished_at is None
