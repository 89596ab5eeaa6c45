"""Start the demo's qcluster and make sure nothing it started outlives the demo.

The cluster runs in its own session (process group), so a Ctrl-C in the terminal reaches
only the demo, which then stops the cluster in order. Playwright starts Chromium in yet
another process group, and Chromium outlives a killed driver: the demo therefore registers
as a *child subreaper* (Linux), so orphaned descendants are re-parented to it, and it kills
every descendant it still has at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux ``prctl``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


class ManagedProcess:
    """A subprocess in its own session whose output goes to a file."""

    def __init__(self, argv: list[str], *, env: dict[str, str], output: Path) -> None:
        self.argv = argv
        self.env = env
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ManagedProcess:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL to its whole process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def kill_descendants(grace: float = 3.0) -> list[int]:
    """Terminate, then kill, every remaining descendant of this process; returns their pids."""
    import psutil  # the ``monitor`` extra; checked when the demo starts

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=grace)
    return [child.pid for child in children]
