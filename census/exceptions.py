"""``CensusError``: the base of every exception census raises to its callers.

One ``except census.exceptions.CensusError`` catches any of them; each also keeps the
standard base its callers already catch (``ValueError`` for bad input, ``RuntimeError`` for
a failed run, Django's ``OperationalError`` for a stalled database).
"""

from __future__ import annotations


class CensusError(Exception):
    """Something census refused or could not do; the subclasses say what."""
