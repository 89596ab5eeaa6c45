"""Benchmarks of the census pipeline against its anchors: ``./bench`` (see BENCHMARKS.md).

``run.py`` is the runner; each other module measures one thing in a child process of its own
(``child.py``) on a fresh database, with ``harness.py``'s shared machinery.
"""
