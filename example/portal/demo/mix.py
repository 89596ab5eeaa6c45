"""Which cédulas the demo registers: a mix of the simulator's scenarios, with the expected end."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from census.models import Status

CEDULA_DIGITS = 10


@dataclass(frozen=True, kw_only=True)
class Case:
    """One kind of member: the simulator scenario its cédula triggers and how it should end."""

    #: Leading digits that choose the simulator's scenario (see docs/simulator.md).
    prefix: str
    #: What happens to this member, for the progress table.
    label: str
    #: The final status the lookup should reach.
    expected: Status


FOUND, NOT_FOUND, CANCELLED, ERROR = Status.FOUND, Status.NOT_FOUND, Status.CANCELLED, Status.ERROR

#: The demo's members in registration order; longer demos cycle through it. The first six
#: cover every kind: found, not found, cancelled, blocked then found, a timeout then found,
#: and captcha trouble that exhausts its retries.
MIX: tuple[Case, ...] = (
    Case(prefix="10", label="found", expected=FOUND),
    Case(prefix="20", label="not found", expected=NOT_FOUND),
    Case(prefix="30", label="cancelled (death)", expected=CANCELLED),
    Case(prefix="715", label="blocked (429) once, then found", expected=FOUND),
    Case(prefix="714", label="too slow once (timeout), then found", expected=FOUND),
    Case(prefix="51", label="captcha token rejected every time: exhausts retries", expected=ERROR),
    Case(prefix="11", label="found (locality, school)", expected=FOUND),
    Case(prefix="713", label="captcha token rejected once, then found", expected=FOUND),
    Case(prefix="31", label="cancelled (double cédula)", expected=CANCELLED),
    Case(prefix="12", label="found (upper-case answer)", expected=FOUND),
    Case(prefix="721", label="HTTP 500 twice, then found", expected=FOUND),
    Case(prefix="20", label="not found", expected=NOT_FOUND),
    Case(prefix="712", label="connection reset once, then found", expected=FOUND),
    Case(prefix="10", label="found", expected=FOUND),
    Case(prefix="711", label="HTTP 500 once, then found", expected=FOUND),
    Case(prefix="32", label="cancelled (political rights)", expected=CANCELLED),
    Case(prefix="11", label="found (locality, school)", expected=FOUND),
    Case(prefix="725", label="blocked (429) twice, then found", expected=FOUND),
    Case(prefix="10", label="found", expected=FOUND),
    Case(prefix="20", label="not found", expected=NOT_FOUND),
    Case(prefix="10", label="found", expected=FOUND),
    Case(prefix="723", label="captcha token rejected twice, then found", expected=FOUND),
    Case(prefix="12", label="found (upper-case answer)", expected=FOUND),
    Case(prefix="30", label="cancelled (death)", expected=CANCELLED),
    Case(prefix="10", label="found", expected=FOUND),
)


def cases(count: int) -> Iterator[Case]:
    """The first ``count`` cases, cycling through ``MIX``."""
    for index in range(count):
        yield MIX[index % len(MIX)]


def new_cedula(prefix: str, taken: Callable[[str], bool]) -> str:
    """A random 10-digit cédula starting with ``prefix`` that ``taken`` says is free."""
    while True:
        rest = CEDULA_DIGITS - len(prefix)
        cedula = prefix + str(secrets.randbelow(10**rest)).zfill(rest)
        if not taken(cedula):
            return cedula
