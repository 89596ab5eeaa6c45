"""Kill what one lookup started: Playwright's driver, Chromium under it, their leftovers.

Linux only (it reads ``/proc``); elsewhere it finds nothing and kills nothing. It knows
Playwright only through a few private attributes of its context manager, guarded, and
imports neither Playwright nor Django.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

__all__ = ["PROFILE_PREFIX", "DriverProcesses", "retrieve_driver_error"]

#: Name prefix of the temporary profiles Playwright creates for launched Chromium.
PROFILE_PREFIX = "playwright_chromiumdev_profile-"


class DriverProcesses:
    """The driver process of one lookup's Playwright, and how to kill it and all under it.

    Built before the driver starts: a driver still starting (its pid not known yet) is then
    told apart from the children this process already had.
    """

    def __init__(self) -> None:
        self._children_before = _children(os.getpid())
        #: The driver's pid, once ``started`` found it.
        self.pid: int | None = None

    def started(self, manager: object) -> None:
        """Note the driver's pid from ``sync_playwright()``'s manager, once it has started."""
        self.pid = _driver_pid(manager)

    def kill(self) -> int:
        """SIGKILL the driver and everything under it (Chromium and its helpers), remove the
        Chromium profiles they leave behind; returns how many processes were signalled."""
        roots = [self.pid] if self.pid else []
        if not roots:  # the driver was starting: find it among the new children
            new = _children(os.getpid()) - self._children_before
            roots = sorted(pid for pid in new if b"run-driver" in _cmdline(pid))
        victims = [pid for root in roots for pid in (root, *_descendants(root))]
        profiles = {path for pid in victims for path in _profile_dirs(pid)}
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        # A killed driver cannot remove the temporary profile it gave Chromium.
        for path in profiles:
            shutil.rmtree(path, ignore_errors=True)
        return len(victims)


def retrieve_driver_error(manager: object) -> None:
    """Mark a killed driver's error as seen, or asyncio logs "never retrieved" at exit."""
    client = getattr(manager, "_client", None)
    future = getattr(getattr(client, "_transport", None), "on_error_future", None)
    if future is not None and future.done() and not future.cancelled():
        future.exception()


def _driver_pid(manager: object) -> int | None:
    """The pid of Playwright's driver process (private attributes, guarded)."""
    for path in (("_client", "_transport", "_proc"), ("_connection", "_transport", "_proc")):
        target: object = manager
        for name in path:
            target = getattr(target, name, None)
        pid = getattr(target, "pid", None)
        if isinstance(pid, int):
            return pid
    return None


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process (Linux /proc; empty elsewhere)."""
    found: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                fields = stat.read().rsplit(")", 1)[1].split()
            found[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return b""


def _profile_dirs(pid: int) -> list[str]:
    """The temporary ``--user-data-dir`` Playwright gave this Chromium process, if any."""
    found = []
    for arg in _cmdline(pid).split(b"\0"):
        if arg.startswith(b"--user-data-dir="):
            path = arg.split(b"=", 1)[1].decode(errors="replace")
            if Path(path).name.startswith(PROFILE_PREFIX):
                found.append(path)
    return found


def _children(pid: int) -> set[int]:
    return {child for child, parent in _parents().items() if parent == pid}


def _descendants(pid: int) -> list[int]:
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found
