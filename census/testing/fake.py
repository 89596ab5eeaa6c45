"""A scripted scraper for tests: each cédula answers from its own list of outcomes.

The script lives in the ``CENSUS_FAKE_SCRIPT`` setting (a dict of cédula -> list of steps);
a worker process reads it at lookup time and
keeps a per-cédula position in a file under ``CENSUS_FAKE_STATE_DIR`` so that attempts
running in different processes continue the same script. Outcomes:

- ``"found"``, ``"not_found"``, ``"cancelled"``, ``"timeout"``, ... (any ``Outcome`` value);
- ``"raise"``: the scraper raises, as a crashing browser would (echoing the cédula);
- ``"sleep:N"``: sleep N seconds, then answer ``found`` (to exercise task timeouts);
- ``"answer:<scenario>"``: the census-site simulator's JSON answer for that scenario
  (``census.testing.answers.ANSWER_SCENARIOS``: found, not found, the novelty wordings),
  read by the real parser, e.g. ``"answer:novedad_not_enabled"``;
- ``"captcha_service"``: the solving service could not serve the account (a zero balance):
  deferred for ``SERVICE_WAIT_SECONDS``, nothing sent, as the real scraper answers.

Past the end of its script a cédula repeats the last step; an unscripted cédula is found.

Given a gate (the pipeline passes one), the fake goes through it as the real scraper does: a
closed gate answers ``deferred`` without using a step, and each answer is recorded (a
``blocked`` step opens the breaker).
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import time
from dataclasses import replace
from pathlib import Path

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from census.gate.protocol import Closed, Gate, Slot
from census.outcomes import CAPTCHA_SERVICE_REASON, Outcome
from census.scraper.base import LookupResult, Novedad, Place, ScraperConfig, site_changed
from census.scraper.parser import parse_answer
from census.testing import answers
from census.testing.scenarios import Scenario

#: The signature of a scripted ``unexpected_page`` step.
SCRIPTED_SIGNATURE = "scripted:unexpected_page"
#: The fake's "scrape timeout": a gate slot further away than this is a deferral.
DEADLINE_SECONDS = 10.0


class ScriptedFailure(RuntimeError):
    """Raised by a ``"raise"`` step."""


def _place(cedula: str) -> Place:
    return Place(
        departamento="BOGOTA D.C.",
        municipio="BOGOTA D.C.",
        puesto=f"PUESTO {int(cedula[-2:]) + 1}",
        direccion="CL 26 # 51-53",
        mesa=str(int(cedula[-1]) + 1),
    )


#: The settings this fake reads (test settings; census itself never reads them).
SETTINGS: dict[str, object] = {
    # cédula -> list of steps (Outcome values, "raise", "sleep:N"); others are found.
    "CENSUS_FAKE_SCRIPT": {},
    # Directory for script positions shared across processes; None keeps them in memory.
    "CENSUS_FAKE_STATE_DIR": None,
}
_SPECIAL = re.compile(rf"raise|{CAPTCHA_SERVICE_REASON}|sleep:\d+(\.\d+)?")
#: Seconds a scripted ``captcha_service`` step defers its lookup.
SERVICE_WAIT_SECONDS = 60.0
_ANSWER_STEPS = {f"answer:{scenario.value}" for scenario in answers.ANSWER_SCENARIOS}


def check_script(script: object) -> dict[str, list[str]]:
    """``CENSUS_FAKE_SCRIPT`` as a dict of lists of known steps, or ImproperlyConfigured."""
    if not isinstance(script, dict):
        raise ImproperlyConfigured("CENSUS_FAKE_SCRIPT must be a dict: cédula -> list of steps")
    known = {outcome.value for outcome in Outcome}
    for steps in script.values():
        if not isinstance(steps, list | tuple) or not steps:
            raise ImproperlyConfigured("each CENSUS_FAKE_SCRIPT entry is a non-empty list")
        for step in steps:
            if step not in known | _ANSWER_STEPS and not _SPECIAL.fullmatch(str(step)):
                raise ImproperlyConfigured(
                    f"unknown CENSUS_FAKE_SCRIPT step {step!r}: an Outcome value, "
                    "'raise', 'sleep:N' or 'answer:<scenario>'"
                )
    return {str(cedula): list(steps) for cedula, steps in script.items()}


class FakeScraper:
    """Answers from ``settings.CENSUS_FAKE_SCRIPT``; never opens a browser."""

    def __init__(self, *, gate: Gate | None = None, config: ScraperConfig | None = None) -> None:
        self.gate = gate
        self.config = config

    def lookup(self, cedula: str) -> LookupResult:
        slot: Slot | None = None
        if self.gate is not None:
            admission = self.gate.peek(DEADLINE_SECONDS) or self.gate.wait_turn(DEADLINE_SECONDS)
            if isinstance(admission, Closed):
                return LookupResult(
                    outcome=Outcome.DEFERRED,
                    detail=f"{admission.reason}: the gate opens in {admission.wait:.0f} s",
                    retry_after=max(admission.wait, 0.0),
                )
            slot = admission
        step = self._next_step(cedula)
        if self.gate is not None and slot is not None:  # the "request" leaves at once
            self.gate.sent(
                slot, left=step not in (Outcome.CAPTCHA_FAILED.value, CAPTCHA_SERVICE_REASON)
            )
        if step == "raise":
            # As a crashing browser may: the message echoes the cédula it was given.
            raise ScriptedFailure(f"scripted scraper crash on {cedula}")
        if step.startswith("sleep:"):
            time.sleep(float(step.split(":", 1)[1]))
            step = "found"
        if step == CAPTCHA_SERVICE_REASON:
            return LookupResult(
                outcome=Outcome.DEFERRED,
                detail=f"{CAPTCHA_SERVICE_REASON}: zero_balance: scripted",
                retry_after=SERVICE_WAIT_SECONDS,
                meta={"sent": False},
            )
        if step.startswith("answer:"):
            scenario = Scenario(step.split(":", 1)[1])
            parsed = parse_answer(answers.answer(cedula, scenario), cedula)
            result = replace(parsed, meta={**parsed.meta, "sent": True})
        else:
            result = self._answer(cedula, Outcome(step))
        if self.gate is not None and slot is not None:
            unexpected = result.outcome is Outcome.UNEXPECTED_PAGE
            opens_in = self.gate.record(
                slot,
                blocked=result.outcome is Outcome.BLOCKED,
                answered=result.outcome.is_answer,
                retry_after=result.retry_after,
                unexpected=str(result.meta.get("signature", "")) if unexpected else "",
            )
            if unexpected and opens_in is not None:
                return site_changed(result, opens_in)
        return result

    @staticmethod
    def _answer(cedula: str, outcome: Outcome) -> LookupResult:
        sent: dict[str, str | int | float | None] = {"sent": outcome is not Outcome.CAPTCHA_FAILED}
        if outcome is Outcome.FOUND:
            return LookupResult(outcome=outcome, place=_place(cedula), meta=sent)
        if outcome is Outcome.CANCELLED:
            return LookupResult(
                outcome=outcome,
                novedad=Novedad(
                    novedad="Cancelada por Muerte",
                    resolucion="0042 de 2024",
                    fecha_novedad="2024-03-01",
                ),
                meta=sent,
            )
        if outcome is Outcome.UNEXPECTED_PAGE:
            sent["signature"] = SCRIPTED_SIGNATURE
        return LookupResult(outcome=outcome, detail=f"scripted {outcome.value}", meta=sent)

    def _next_step(self, cedula: str) -> str:
        script = check_script(
            getattr(django_settings, "CENSUS_FAKE_SCRIPT", SETTINGS["CENSUS_FAKE_SCRIPT"])
        )
        steps = script.get(cedula, ["found"])
        position = self._advance(cedula)
        return steps[min(position, len(steps) - 1)]

    def _advance(self, cedula: str) -> int:
        """Return how many lookups this cédula had before, counting this one."""
        state_dir = getattr(django_settings, "CENSUS_FAKE_STATE_DIR", None)
        if state_dir is None:
            counts = _memory_counts
            position = counts.get(cedula, 0)
            counts[cedula] = position + 1
            return position
        # Hash the name: the state directory must not hold cédulas in clear either.
        name = hashlib.sha256(cedula.encode()).hexdigest()[:16]
        path = Path(state_dir) / f"{name}.count"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            position = int(handle.read() or 0)
            handle.seek(0)
            handle.truncate()
            handle.write(str(position + 1))
        return position


_memory_counts: dict[str, int] = {}


def reset() -> None:
    """Forget in-process script positions (tests)."""
    _memory_counts.clear()
