"""A lookup's result, and what changed between two of them (a re-check's comparison)."""

from __future__ import annotations

from typing import Any

from census.models import ANSWER_FIELDS, ANSWER_STATUSES, CedulaInfo

#: The fields that make up a lookup's result (what a re-check compares).
RESULT_FIELDS = ("status", *ANSWER_FIELDS)


def result_of(info: CedulaInfo) -> dict[str, Any]:
    """The lookup's current result: ``RESULT_FIELDS``, its reason and when it ended."""
    result: dict[str, Any] = {name: getattr(info, name) for name in RESULT_FIELDS}
    result["final_reason"] = info.final_reason
    result["finished_at"] = info.finished_at.isoformat() if info.finished_at else None
    return result


def changed_fields(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The ``RESULT_FIELDS`` whose value differs between two results (none without a
    previous result, or when either is not a census answer: ``error`` says nothing new).

    A field the previous result does not hold at all (kept before census had it, as
    ``coddivipol``) says nothing about a change, and is not compared."""
    if previous.get("status") not in ANSWER_STATUSES:
        return []
    if current.get("status") not in ANSWER_STATUSES:
        return []
    return [
        name
        for name in RESULT_FIELDS
        if name in previous and (previous.get(name) or "") != (current.get(name) or "")
    ]
