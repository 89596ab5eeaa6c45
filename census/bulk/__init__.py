"""Bulk lookups: a backfill or re-check of many members, fed to the queue at the site's pace.

A run (``BulkRun``) freezes its selection into member rows, then is *fed*: each feed starts
lookups (through ``census.lookup.refresh``, the same path as a leader's refresh) only while fewer
lookups are in flight than the cluster gets through in ``CENSUS_BULK_WINDOW_SECONDS``: what
the rate gate serves in it, or fewer when the workers, not the gate, set the pace (measured
from the attempts that finished lately, ``window_size``). The queue therefore never holds
more than about one window of work, so the ORM broker never redelivers prefetched tasks,
and a registration made during a run waits about one window behind it.
Feeding pauses while the breaker is open, and while lookups deferred by a block still wait
for their place on the gate's deferral cursor. One feeder at a time computes and fills the
window, cluster-wide; a selection has at most one open run.

A feed marks its members and starts their lookups in one transaction (the tasks are queued
on commit), so a killed feeder loses nothing and starts nothing twice; feeding the same run
again continues where it stopped. ``census_lookup`` feeds from the terminal; a background run
and the periodic re-check are fed by a Django-Q2 schedule (``census-bulk-<id>``).

- ``selection``: which members a run looks up (``Selection``, the users file);
- ``runs``: a run's life: opened or resumed, its ``progress``, finished, cancelled;
- ``window``: the window's size and what is in it, and whether the gate lets a feed in;
- ``feeder``: ``feed`` fills the window, ``feed_and_finish`` is a feeder's round (the
  terminal's; ``feed_scheduled``, a background run's task);
- ``recheck``: the daily re-check's schedule and task.

Every public name is importable from here; the schedules' task paths
(``census.bulk.feed_scheduled``, ``census.bulk.start_recheck``, stored in Django-Q2's rows)
resolve through these names.
"""

from __future__ import annotations

from census.bulk.feeder import Feed, feed, feed_and_finish, feed_scheduled
from census.bulk.recheck import next_recheck_at, start_recheck, sync_recheck_schedule
from census.bulk.runs import Progress, cancel, finish_if_done, open_run, progress
from census.bulk.selection import (
    FINAL_VALUES,
    Selection,
    SelectionError,
    read_users_file,
    read_users_path,
)
from census.bulk.window import (
    IN_FLIGHT_VALUES,
    THROUGHPUT_LOOKBACK_SECONDS,
    deferred_ahead,
    gate_now,
    in_flight_window,
    window_capacity,
    window_size,
)

__all__ = [
    "FINAL_VALUES",
    "IN_FLIGHT_VALUES",
    "THROUGHPUT_LOOKBACK_SECONDS",
    "Feed",
    "Progress",
    "Selection",
    "SelectionError",
    "cancel",
    "deferred_ahead",
    "feed",
    "feed_and_finish",
    "feed_scheduled",
    "finish_if_done",
    "gate_now",
    "in_flight_window",
    "next_recheck_at",
    "open_run",
    "progress",
    "read_users_file",
    "read_users_path",
    "start_recheck",
    "sync_recheck_schedule",
    "window_capacity",
    "window_size",
]
