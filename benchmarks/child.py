"""One measurement in a process of its own: ``python -m benchmarks.child NAME PARAMS OUT``.

Makes and migrates the database the environment names, runs ``benchmarks.NAME.run(params,
clusters)``, writes what it returns as JSON to OUT, and stops every qcluster it started and
drops the database, whatever happens (SIGTERM from the runner included).
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import time
from pathlib import Path

import django

from benchmarks import harness


def main() -> None:
    name, params, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    harness.create_database()
    django.setup()
    clusters = harness.Clusters(out.parent)
    try:
        harness.migrate()
        result = importlib.import_module(f"benchmarks.{name}").run(params, clusters)
    finally:
        clusters.stop()
        harness.purge_broker()
        harness.drop_database()
    result.setdefault("info", {})["elapsed_s"] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
