"""The token pool's rules, pure: how deep, when a token is too old, how long a lookup waits,
how long the service is left alone after a failure. No I/O, no clock of its own.

A reCAPTCHA token lives 120 s from its solve, and the census site takes one consulta every
``CENSUS_RATE_LIMIT_SECONDS``. A solve takes about 30 s. So the pool asks ahead only as many
solves as the gate can spend while one is being solved (``depth``), and never more than the
lookups that are due (``to_ask``): every token asked has a lookup to go to before it ages out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

#: Seconds a reCAPTCHA v2 token is accepted after its solve (Google's documented life).
TOKEN_LIFE = 120.0
#: The latest a token may leave with a consulta: a 10 s margin to its life.
USE_WITHIN = 110.0
#: The oldest a token may be when an attempt takes it: the 30 s left are for the browser, the
#: page, the typing and the gate. Older tokens wait for nobody: they are wasted.
CLAIM_WITHIN = 80.0
#: A solve the service has not delivered after this long is given up (not paid).
SOLVE_GIVE_UP = 180.0
#: The solve time assumed before any solve was seen (reCAPTCHA v2 on the paid services).
DEFAULT_SOLVE_SECONDS = 30.0
#: The most solves asked ahead at once, whatever the rate (no rate limit, a tiny interval).
MAX_DEPTH = 50
#: Recent solves the solve-time estimate is the median of.
SAMPLES = 20
#: Seconds a lookup waiting for a token waits at least, and at most, before it looks again.
MIN_WAIT = 2.0
MAX_WAIT = 60.0
#: ... and at most this long while no solve has been seen (the solve time is a guess).
FIRST_LOOK = 10.0
#: Seconds the service is left alone after a failure (CENSUS_CAPTCHA_PROBE_SECONDS), doubling
#: with each failed probe, up to ``BACKOFF_GROWTH`` times that.
BACKOFF = 60.0
BACKOFF_GROWTH = 15


def solve_estimate(samples: Sequence[float]) -> float:
    """Seconds a solve takes: the median of recent ones, else ``DEFAULT_SOLVE_SECONDS``."""
    seen = [s for s in samples if s >= 0]
    return float(statistics.median(seen)) if seen else DEFAULT_SOLVE_SECONDS


def depth(solve_seconds: float, interval: float) -> int:
    """Solves to keep in flight: the gate's rate times the solve time, plus one for the token
    the next consulta takes while the others are solved."""
    if interval <= 0:
        return MAX_DEPTH
    return min(math.ceil(max(solve_seconds, 0.0) / interval) + 1, MAX_DEPTH)


def to_ask(*, due: int, in_flight: int, depth: int, daily_left: int | None = None) -> int:
    """New solves to ask now: up to ``depth`` in flight (being solved or ready), never more
    than the lookups due, never past the day's limit."""
    wanted = max(min(due, depth) - in_flight, 0)
    return wanted if daily_left is None else max(min(wanted, daily_left), 0)


def wait_for_token(
    position: int, ready_in: Sequence[float], *, solve_seconds: float, interval: float
) -> float:
    """Seconds until a token is likely there for a lookup with ``position`` lookups waiting
    before it: when the solve at that place in line is expected (``ready_in``: seconds until
    each solve in flight is expected, any order), else a new solve plus the gate's turns."""
    expected = sorted(max(s, 0.0) for s in ready_in)
    if position < len(expected):
        wait = expected[position]
    else:
        wait = solve_seconds + (position - len(expected)) * max(interval, 0.0)
    return min(max(wait, MIN_WAIT), MAX_WAIT)


def backoff(failures: int, base: float = BACKOFF) -> float:
    """Seconds before the next probe of a service that failed ``failures`` probes already."""
    return min(base * 2 ** min(max(failures, 0), 16), base * BACKOFF_GROWTH)


def usable(age: float) -> bool:
    """May an attempt take a token solved ``age`` seconds ago?"""
    return 0 <= age <= CLAIM_WITHIN
