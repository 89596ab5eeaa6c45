"""Follow-ups for the tests: each writes a row per run to a table of its own, so a test
counts what every run left behind (``RECORDS``, made by ``make_records_table``)."""

from __future__ import annotations

import logging
import os
import time

from django.db import connection

from census.models import CedulaInfo

RECORDS = "census_test_follow_up_record"


def make_records_table() -> None:
    """Create the table (once per database); any test may then count its rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {RECORDS} "
            "(lookup_id integer NOT NULL, key varchar(100) NOT NULL, "
            "func varchar(20) NOT NULL, pid integer NOT NULL)"
        )


def records(lookup_id: int | None = None) -> list[tuple[int, str, str]]:
    """(lookup_id, key, func) of every committed run (of one lookup), in the order written."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT lookup_id, key, func FROM {RECORDS}")
        rows = [(int(r[0]), str(r[1]), str(r[2])) for r in cursor.fetchall()]
    return [r for r in rows if lookup_id is None or r[0] == lookup_id]


def _write(lookup_id: int, key: str, func: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RECORDS} (lookup_id, key, func, pid) VALUES (%s, %s, %s, %s)",
            [lookup_id, key, func, os.getpid()],
        )


def record(lookup_id: int, key: str) -> None:
    """Succeeds, leaving one row."""
    _write(lookup_id, key, "record")


def second(lookup_id: int, key: str) -> None:
    """Succeeds too: a second link, to see the order."""
    _write(lookup_id, key, "second")


def slow(lookup_id: int, key: str) -> None:
    """Writes its row, then works on for a second (a worker killed now leaves the row
    uncommitted: it must not count)."""
    _write(lookup_id, key, "slow")
    time.sleep(1.0)


def fail(lookup_id: int, key: str) -> None:
    """Writes a row, then raises with the member's cédula in the message: the row must be
    rolled back and the stored error masked."""
    _write(lookup_id, key, "fail")
    cedula = CedulaInfo.objects.get(pk=lookup_id).user.username
    raise RuntimeError(f"the portal could not reach {cedula}")


def crm_rejects(lookup_id: int, key: str) -> None:
    """What a CRM client does: logs the member's cédula (dotted, through the standard
    library's logging) and raises with it in the message. Nothing of it may reach a log in
    full."""
    cedula = CedulaInfo.objects.get(pk=lookup_id).user.username
    dotted = f"{int(cedula):,}".replace(",", ".")
    logging.getLogger("portal.crm").warning("CRM refused %s", dotted)
    raise RuntimeError(f"CRM rejected member {cedula}")
