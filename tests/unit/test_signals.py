"""census.signals: sent once a change commits, robustly, with the event's fields."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from census import signals
from census.lookup import refresh
from census.lookup.status import locked, transition
from census.models import CedulaInfo, Status
from tests.driving import drive

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """What each census signal's receiver was given, per signal."""
    got: dict[str, list[dict[str, Any]]] = {"changed": [], "finished": []}

    def on_changed(sender: Any, **kwargs: Any) -> None:
        got["changed"].append(kwargs)

    def on_finished(sender: Any, **kwargs: Any) -> None:
        got["finished"].append(kwargs)

    signals.lookup_status_changed.connect(on_changed, dispatch_uid="test.changed")
    signals.lookup_finished.connect(on_finished, dispatch_uid="test.finished")
    yield got
    signals.lookup_status_changed.disconnect(dispatch_uid="test.changed")
    signals.lookup_finished.disconnect(dispatch_uid="test.finished")


def test_every_committed_change_is_sent_once_with_the_events_fields(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, heard: dict[str, Any]
) -> None:
    """Registration, each move to a final status: one signal per change, in order."""
    info = drive(new_lookup("timeout", "found"), django_capture_on_commit_callbacks)
    moves = [(k["from_status"], k["to_status"]) for k in heard["changed"]]
    assert moves == [
        (None, "pending"),
        ("pending", "scraping"),
        ("scraping", "retrying"),
        ("retrying", "scraping"),
        ("scraping", "found"),
    ]
    last = heard["changed"][-1]
    assert (last["lookup_id"], last["step"], last["retry_count"]) == (info.pk, 2, 1)
    assert last["lookup"].pk == info.pk and last["reason"] == "found"
    [finished] = heard["finished"]
    assert (finished["status"], finished["reason"]) == ("found", "found")
    assert finished["previous_result"] is None and finished["changed"] is False


def test_a_rolled_back_change_sends_nothing(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, heard: dict[str, Any]
) -> None:
    """A move whose transaction rolls back is never announced."""
    info = new_lookup("found")
    heard["changed"].clear()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        locked(info.pk) as row,
    ):
        assert row is not None
        transition(row, Status.SCRAPING, step=row.step)
        raise RuntimeError("the caller's transaction fails after the move")
    assert heard["changed"] == []
    assert CedulaInfo.objects.get(pk=info.pk).status == Status.PENDING


def test_a_failing_receiver_neither_breaks_the_lookup_nor_hides_the_others(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, heard: dict[str, Any]
) -> None:
    """A receiver that raises is logged with its traceback; the lookup ends as it should
    and the receivers after it still hear every change."""

    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("the portal's receiver is broken")

    signals.lookup_finished.connect(broken, dispatch_uid="test.broken")
    try:
        with capture_logs() as logs:
            info = drive(new_lookup("found"), django_capture_on_commit_callbacks)
    finally:
        signals.lookup_finished.disconnect(dispatch_uid="test.broken")
    assert info.status == Status.FOUND
    assert len(heard["finished"]) == 1
    [failed] = [e for e in logs if e["event"] == "receiver_failed"]
    assert failed["signal"] == "lookup_finished" and failed["receiver"].endswith("broken")
    assert isinstance(failed["exc_info"], ValueError)
    assert failed["log_level"] == "error"


def test_a_recheck_says_whether_the_census_answer_changed(
    new_lookup: Any, django_capture_on_commit_callbacks: Any, heard: dict[str, Any]
) -> None:
    """After a refresh, lookup_finished carries the previous result and ``changed``."""
    capture = django_capture_on_commit_callbacks
    info = drive(new_lookup("found", "cancelled"), capture)
    with capture(execute=True):
        assert refresh.restart(info.pk, requester_id=None)
    drive(CedulaInfo.objects.get(pk=info.pk), capture)
    first, second = heard["finished"]
    assert (first["status"], first["changed"]) == ("found", False)
    assert (second["status"], second["changed"]) == ("cancelled", True)
    assert second["previous_result"]["status"] == "found"
