"""census.compat: the module paths census had before its subpackages still import, warn,
and give the module (or name) at its new home; stored task paths still resolve; the scraper's
names of when its flow had "steps" (now stages) still work, with a warning."""

from __future__ import annotations

import importlib
import pydoc
import sys
import warnings

import pytest

from census.compat import MOVED_MODULES, PIPELINE, PIPELINE_NAMES
from census.q2 import queue
from census.scraper.observe import RENAMED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_an_old_module_path_warns_and_is_the_new_module(old: str, new: str) -> None:
    """``import census.<old>`` is the new module itself, with a DeprecationWarning naming it."""
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


@pytest.mark.parametrize(("name", "home"), sorted(PIPELINE_NAMES.items()))
def test_the_pipeline_names_come_from_their_homes(name: str, home: str) -> None:
    """``from census.pipeline import X`` warns and gives ``X`` from where it lives now."""
    sys.modules.pop(PIPELINE, None)
    pipeline = importlib.import_module(PIPELINE)
    with pytest.warns(DeprecationWarning, match=f"{PIPELINE}.{name} has moved to {home}"):
        found = getattr(pipeline, name)
    assert found is getattr(importlib.import_module(home), name)


def test_the_gates_old_rule_names_warn() -> None:
    """``census.gate`` was the rules' module: its names resolve from ``census.gate.rules``;
    the scraper's protocol is the package's own."""
    import census.gate
    from census.gate import rules

    with pytest.warns(DeprecationWarning, match="census.gate.GatePolicy has moved"):
        assert census.gate.GatePolicy is rules.GatePolicy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert census.gate.OpenGate is importlib.import_module("census.gate.protocol").OpenGate
    with pytest.raises(AttributeError):
        census.gate.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("path", "home"),
    [
        (queue.OLD_TASK_FUNC, queue.TASK_FUNC),
        (queue.OLD_HOOK, queue.HOOK),
        (queue.FOLLOW_UP_FUNC, queue.FOLLOW_UP_FUNC),
        (queue.FEED_FUNC, queue.FEED_FUNC),
        (queue.RECHECK_FUNC, queue.RECHECK_FUNC),
        # Schedules of bulk runs and the re-check stored before census.bulk was a package.
        ("census.bulk.feed_scheduled", "census.bulk.feeder.feed_scheduled"),
        ("census.bulk.start_recheck", "census.bulk.recheck.start_recheck"),
    ],
)
def test_the_task_paths_stored_in_the_broker_resolve(path: str, home: str) -> None:
    """Django-Q2 finds a task's function with ``pydoc.locate``: every path census ever
    queued or scheduled finds the function at its home."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        found = pydoc.locate(path)
    assert found is not None and found is pydoc.locate(home)


@pytest.mark.parametrize("module", ["census.scraper.observe", "census.scraper.playwright"])
@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_the_flows_old_step_names_warn(module: str, old: str, new: str) -> None:
    """``StepReport``, ``OnStep`` and ``STEPS`` resolve to the stage names, from the module
    that defines them and the one that re-exports them, with a DeprecationWarning naming the
    new name and blamed on the line that asked; an unknown name is still an AttributeError."""
    found = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is now {module}\.{new}") as seen:
        assert getattr(found, old) is getattr(found, new)
    assert [warning.filename for warning in seen] == [__file__]
    with pytest.raises(AttributeError):
        found.StepNoSuchName  # noqa: B018


def test_the_scrapers_old_on_step_keyword_warns() -> None:
    """``PlaywrightScraper(on_step=...)`` still takes the observer, as ``on_stage``, with a
    DeprecationWarning blamed on the caller; both names at once is a TypeError."""
    from census.gate.protocol import OpenGate
    from census.scraper.base import ScraperConfig
    from census.scraper.playwright import PlaywrightScraper, StageReport

    def observer(report: StageReport) -> None:
        """Nothing: only its identity is checked."""

    config = ScraperConfig(site_url="http://127.0.0.1:9/", timeout=5)
    with pytest.warns(DeprecationWarning, match=r"PlaywrightScraper\(on_stage=\)") as seen:
        scraper = PlaywrightScraper(gate=OpenGate(), config=config, on_step=observer)
    assert scraper.on_stage is observer
    assert [warning.filename for warning in seen] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        current = PlaywrightScraper(gate=OpenGate(), config=config, on_stage=observer)
    assert current.on_stage is observer
    with pytest.raises(TypeError, match="not both"):
        PlaywrightScraper(gate=OpenGate(), config=config, on_stage=observer, on_step=observer)
