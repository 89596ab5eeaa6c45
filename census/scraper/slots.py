"""At most N browsers at once on this host, whatever the number of workers and clusters.

Four Chromiums on two cores each run out of time loading the page, typing or clicking, and
the member's attempt paid for our machine's slowness. A browser slot is an exclusive
``flock`` on one of N files in a directory shared by every process of the host (every
qcluster and worker): the kernel releases it when its holder exits, however it dies, so a
killed worker never leaks a slot. Waiting for a slot is not part of a lookup's budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from census.exceptions import CensusError

#: Seconds between looks for a free slot.
_POLL = 0.1


def default_dir() -> str:
    """One directory per user of the host (processes of one portal share it)."""
    return str(Path(tempfile.gettempdir()) / f"census-browsers-{os.getuid()}")


class NoBrowserSlot(CensusError):
    """Every browser slot of this host stayed taken for the whole wait."""


@contextlib.contextmanager
def browser_slot(limit: int, wait: float, directory: str | None = None) -> Iterator[int]:
    """Hold one of ``limit`` host-wide browser slots (its number) for the ``with`` block.

    Raises ``NoBrowserSlot`` after ``wait`` seconds. ``limit`` <= 0: no limit.
    """
    if limit <= 0:
        yield -1
        return
    folder = Path(directory or default_dir())
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        for number in range(limit):
            handle = os.open(folder / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            try:
                yield number
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                os.close(handle)
            return
        if time.monotonic() >= deadline:
            raise NoBrowserSlot(f"all {limit} browser slot(s) of this host stayed busy")
        time.sleep(_POLL)
