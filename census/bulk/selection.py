"""Which members a bulk run looks up: a ``Selection`` (missing lookups, final statuses, an
age, a users file), frozen into the run's member rows by ``census.bulk.runs.open_run``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone

from census.cedula import canonical
from census.conf import settings
from census.exceptions import CensusError
from census.models import FINAL_STATUSES, CedulaInfo

FINAL_VALUES = tuple(sorted(status.value for status in FINAL_STATUSES))


class SelectionError(CensusError, ValueError):
    """A selection that cannot be run (its message says why; it never shows a cédula)."""


@dataclass(frozen=True)
class Selection:
    """Which members a run looks up.

    ``missing`` members (no lookup yet) plus those whose final lookup matches ``statuses``
    and ``older_than_s`` (both when given); ``user_ids`` (from a users file) limits the
    result, or alone selects those users whatever their lookup. A selected user without a
    lookup stays out unless ``CENSUS_LOOKUP_FOR`` accepts them, as at registration.
    """

    missing: bool = False
    statuses: tuple[str, ...] = ()
    older_than_s: float | None = None
    user_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.statuses) - set(FINAL_VALUES))
        if unknown:
            raise SelectionError(
                f"--status takes final statuses ({', '.join(FINAL_VALUES)}); "
                f"not {', '.join(unknown)}"
            )
        if not (self.missing or self.statuses or self.older_than_s or self.user_ids is not None):
            raise SelectionError(
                "choose members: --missing, --status, --older-than and/or --users-file"
            )

    @property
    def key(self) -> str:
        """A readable, cédula-free description; a run with the same key resumes the other."""
        parts = []
        if self.missing:
            parts.append("missing")
        if self.statuses:
            parts.append("status=" + ",".join(sorted(self.statuses)))
        if self.older_than_s:
            parts.append(f"older_than={self.older_than_s:g}s")
        if self.user_ids is not None:
            digest = hashlib.sha256(",".join(map(str, sorted(self.user_ids))).encode())
            parts.append(f"users={len(self.user_ids)}:{digest.hexdigest()[:12]}")
        return " ".join(parts)

    def user_pks(self, now: datetime | None = None) -> list[int]:
        """The selected users' primary keys, in order."""
        now = now or timezone.now()
        users = get_user_model().objects.all()
        wanted = Q(pk__in=[])
        if self.missing:
            wanted |= Q(cedula_info__isnull=True)
        if self.statuses or self.older_than_s:
            lookups = CedulaInfo.objects.filter(status__in=self.statuses or FINAL_VALUES)
            if self.older_than_s:
                lookups = lookups.filter(finished_at__lt=now - timedelta(seconds=self.older_than_s))
            wanted |= Q(pk__in=lookups.values("user_id"))
        if self.user_ids is not None:
            if self.missing or self.statuses or self.older_than_s:
                users = users.filter(wanted)
            users = users.filter(pk__in=self.user_ids)
        else:
            users = users.filter(wanted)
        refused = _refused(users.filter(cedula_info__isnull=True))
        pks = users.order_by("pk").values_list("pk", flat=True)
        return [pk for pk in pks if pk not in refused]


def _refused(users: QuerySet[Any]) -> set[Any]:
    """The users (without a lookup) whom ``CENSUS_LOOKUP_FOR`` refuses: a run creates no
    lookup that their registration did not. One query; the callable is called per user."""
    lookup_for = settings.lookup_for
    return {user.pk for user in users.iterator(chunk_size=2000) if not lookup_for(user)}


def read_users_file(lines: Iterable[str]) -> tuple[int, ...]:
    """User ids from lines holding a cédula (the user's cédula field) or a user id.

    Blank lines and ``#`` comments are skipped. A line that names no user fails the whole
    file (line numbers only in the message: no cédula), so nothing is half done.
    """
    user_model = get_user_model()
    field = settings.cedula_field
    ids: dict[int, None] = {}
    unknown: list[int] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        cedula = canonical(text)
        pk = None
        if cedula is not None:
            pk = user_model.objects.filter(**{field: cedula}).values_list("pk", flat=True).first()
        if pk is None and text.isdigit():
            pk = user_model.objects.filter(pk=int(text)).values_list("pk", flat=True).first()
        if pk is None:
            unknown.append(number)
        else:
            ids[int(pk)] = None
    if unknown:
        shown = ", ".join(map(str, unknown[:20])) + (" ..." if len(unknown) > 20 else "")
        raise SelectionError(
            f"{len(unknown)} line(s) of the users file name no user (lines {shown}); "
            "nothing was started"
        )
    return tuple(ids)


def read_users_path(path: str | Path) -> tuple[int, ...]:
    try:
        with open(path, encoding="utf-8") as handle:
            return read_users_file(handle)
    except (OSError, UnicodeDecodeError) as error:
        raise SelectionError(f"cannot read the users file: {error}") from None
