"""Parser time against nesting depth and malformed markup: it should grow linearly.

Times ``parse_rendered_page`` on 5,000 and 20,000 nested ``<div>`` tags (4x the depth should
take about 4x the time, not 16x), then on floods of unfinished constructs that make the
standard library's ``HTMLParser.close`` rescan the rest of the input for each one, and
``scrub`` on 1 MB of digits. Pure Python, no Django. Prints times; asserts nothing.

    .venv/bin/python benchmarks/bench_parser.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from census.cedula import scrub  # noqa: E402
from census.scraper.parser import parse_rendered_page  # noqa: E402

CEDULA = "2012345678"
MESSAGE = f"El documento {CEDULA} no se encuentra en el censo."


def _best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def _nested(depth: int) -> str:
    return "<div>" * depth + MESSAGE + "</div>" * depth


def main() -> None:
    print("nested <div> tags (parse_rendered_page)")
    small, large = 5_000, 20_000
    t_small = _best_of(3, lambda: parse_rendered_page(_nested(small), CEDULA))
    t_large = _best_of(3, lambda: parse_rendered_page(_nested(large), CEDULA))
    print(f"  {small:>6} deep: {t_small * 1000:8.1f} ms")
    print(f"  {large:>6} deep: {t_large * 1000:8.1f} ms")
    print(f"  ratio {t_large / t_small:.1f}x for {large // small}x the depth (linear: ~4x)")

    size = 256 * 1024
    floods = {
        "<a (unfinished start tags)": "<a" * (size // 2),
        "</ (unfinished end tags)": "</" * (size // 2),
        "<? (unfinished instructions)": "<?" * (size // 2),
        "< (lone)": "<" * size,
    }
    print(f"malformed markup, {size // 1024} KiB (parse_rendered_page)")
    for name, html in floods.items():
        elapsed = _best_of(1, lambda html=html: parse_rendered_page(html, CEDULA))
        print(f"  {name:<30} {elapsed * 1000:8.1f} ms")

    print("scrub, 1 MB of digits")
    texts = {
        "'0 ' repeated, then the cedula": "0 " * 500_000 + CEDULA,
        "'1' repeated": "1" * 1_000_000,
    }
    for name, text in texts.items():
        elapsed = _best_of(3, lambda text=text: scrub(text, CEDULA))
        print(f"  {name:<30} {elapsed * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
