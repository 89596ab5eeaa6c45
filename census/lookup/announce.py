"""After a status change commits: its event and its signals (``census.signals``)."""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from census import events, logs, signals
from census.conf import settings
from census.events import Event
from census.lookup.results import changed_fields, result_of
from census.models import FINAL_STATUSES, CedulaInfo, Status


def status_changed(info: CedulaInfo, fields: dict[str, Any]) -> None:
    """Log ``lookup_status_changed`` and send the signals; ``fields`` are the event's."""
    events.emit(Event.LOOKUP_STATUS_CHANGED, **fields)
    _send(signals.lookup_status_changed, info, lookup=info, **fields)
    to_status = Status(fields["to_status"])
    if to_status in FINAL_STATUSES:
        previous = info.previous_result or None
        _send(
            signals.lookup_finished,
            info,
            lookup=info,
            lookup_id=info.pk,
            user_id=info.user_id,
            status=to_status.value,
            reason=fields.get("reason", info.final_reason),
            previous_result=previous,
            changed=bool(previous and changed_fields(previous, result_of(info))),
        )


def _send(signal: Signal, info: CedulaInfo, **kwargs: Any) -> None:
    for receiver, result in signal.send_robust(sender=CedulaInfo, **kwargs):
        if isinstance(result, Exception):
            name = "lookup_finished" if signal is signals.lookup_finished else "status_changed"
            with logs.scrubbing(_cedula(info)):
                events.emit(
                    Event.RECEIVER_FAILED,
                    lookup_id=info.pk,
                    signal=name,
                    receiver=getattr(receiver, "__qualname__", repr(receiver)),
                    exc_info=result,
                )


def _cedula(info: CedulaInfo) -> str:
    try:
        return str(getattr(info.user, settings.cedula_field, "") or "")
    except Exception:  # the user is gone, or the database is away: nothing to mask
        return ""
