"""Import paths census had before its modules moved into subpackages (0.2.0) keep working.

Importing an old module path (``census.ratelimit``, ``census.hooks``...) warns
``DeprecationWarning`` and gives the module at its new home, the same object; the names
``census.pipeline`` re-exported come from their modules the same way. So tasks and schedules
queued by earlier versions (``census.pipeline.run_attempt`` with its hook
``census.hooks.attempt_finished``) still run, and a portal's old imports still work while it
moves to the new ones. ``install`` is called when ``census`` is imported. ``renamed`` warns
for a name that changed in place (the scraper's flow reports "stages", no longer "steps").
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

#: Old module path -> the module it is now.
MOVED_MODULES: dict[str, str] = {
    "census.registration": "census.lookup.start",
    "census.task": "census.lookup.attempt",
    "census.reports": "census.lookup.report",
    "census.conclusion": "census.lookup.conclude",
    "census.policy": "census.lookup.policy",
    "census.transitions": "census.lookup.status",
    "census.announce": "census.lookup.announce",
    "census.results": "census.lookup.results",
    "census.refresh": "census.lookup.refresh",
    "census.gatestore": "census.gate.store",
    "census.ratelimit": "census.gate.waiter",
    "census.pause": "census.gate.pause",
    "census.queue": "census.q2.queue",
    "census.hooks": "census.q2.hooks",
    "census.ticker": "census.maintenance.ticker",
    "census.sweeper": "census.maintenance.sweeper",
    "census.upkeep": "census.maintenance.upkeep",
    "census.stats": "census.observability.stats",
    "census.snapshots": "census.observability.snapshots",
    "census.metrics": "census.observability.metrics",
}
#: ``census.pipeline`` re-exported the pipeline's steps by name: name -> its module now.
PIPELINE_NAMES: dict[str, str] = {
    "run_attempt": "census.lookup.attempt",
    "ScraperCrashed": "census.lookup.attempt",
    "current_task_id": "census.q2.context",
    "conclude_attempt": "census.lookup.conclude",
    "queue_now": "census.q2.queue",
    "request_refresh": "census.lookup.refresh",
    "start_lookup": "census.lookup.start",
    "record_failure": "census.lookup.report",
}
PIPELINE = "census.pipeline"


def moved(old: str, new: str) -> None:
    warnings.warn(
        f"{old} has moved to {new}; import it from there", DeprecationWarning, stacklevel=3
    )


def renamed(old: str, new: str, *, stacklevel: int) -> None:
    """A name census had before a rename was used: warn that it is ``new`` now (``stacklevel``
    as for ``warnings.warn`` called here: the line to blame)."""
    warnings.warn(
        f"{old} is now {new}; use the new name", DeprecationWarning, stacklevel=stacklevel
    )


def _pipeline() -> types.ModuleType:
    module = types.ModuleType(PIPELINE, "Deprecated: the pipeline's steps, by name.")

    def __getattr__(name: str) -> Any:
        if name not in PIPELINE_NAMES:
            raise AttributeError(f"module {PIPELINE!r} has no attribute {name!r}")
        home = PIPELINE_NAMES[name]
        moved(f"{PIPELINE}.{name}", f"{home}.{name}")
        return getattr(importlib.import_module(home), name)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__dict__["__all__"] = sorted(PIPELINE_NAMES)
    return module


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == PIPELINE:
            return _pipeline()
        new = MOVED_MODULES[spec.name]
        moved(spec.name, new)
        return importlib.import_module(new)

    def exec_module(self, module: types.ModuleType) -> None:
        """The module is complete already (the new home, or the pipeline's names)."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED_MODULES or fullname == PIPELINE:
            return importlib.util.spec_from_loader(fullname, _Loader())
        return None


_FINDER = _Finder()


def install() -> None:
    """Put the finder for old paths in front of the import system (once)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
