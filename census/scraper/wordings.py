"""What the census site's answer texts mean: the one table from a wording to an outcome.

An answer that is not a polling place says what it is in words: the not-found message, or a
novelty text ("Cancelada por Muerte", "Vigente con Pérdida o Suspensión de los Derechos
Políticos", ...). ``WORDINGS`` is the only place those words are read; the parser takes the
outcome and the reason (``census.outcomes.AnswerReason``, a lookup's ``final_reason``) from
here, and a text no entry matches is an answer in no known shape, never a guess.

Texts are compared folded (``fold``): accents and case are ignored and any run of white
space matches one space, so "Pérdida", "PERDIDA" and "perdida" are one word. The first
entry that matches wins, so the specific ones come first:

- ``RIGHTS_SUSPENDED``: "Vigente con", "Baja por" or "Cancelada por" + "Pérdida o
  Suspensión de los Derechos Políticos" (either word or both, "de" with or without "los"):
  ``cancelled``, reason ``rights_suspended``;
- ``CANCELLED``: "Cancelada por …", any other cause (Muerte, Doble Cedulación, Falsa
  Identidad, ...): ``cancelled``;
- ``NOT_ENABLED``: "no se encuentra habilitado para votar" ("habilitada", "no está"):
  ``not_found``, reason ``not_enabled``;
- ``PENDING_REQUEST``: "Pendiente por Solicitud en proceso" ("Solicitud en proceso"):
  ``not_found``, reason ``pending_request``;
- ``NOT_IN_CENSUS``: "no se encuentra en el censo", the not-found message: ``not_found``.

docs/results.md says what each means for a portal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from census.outcomes import AnswerReason, Outcome

#: Distinct characters whose folded form is remembered (a hostile text cannot grow it more).
_FOLD_CACHE_CHARS = 4096


class _FoldTable(dict[int, str]):
    """``str.translate`` table folding one character to one: no accent, lower case, and
    white space as a space. Length-preserving, so a match's position is the text's."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        if char.isspace():
            folded = " "
        else:
            parts = unicodedata.normalize("NFKD", char)
            lower = "".join(c for c in parts if not unicodedata.combining(c)).lower()
            # A character that folds to more or fewer than one ("ß", "ﬁ", "İ") stays itself.
            folded = lower if len(lower) == 1 else char
        if len(self) < _FOLD_CACHE_CHARS:
            self[code] = folded
        return folded


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """``text`` without accents, in lower case, every white space a space; same length
    (a combining accent left alone stays: ``read`` composes the text first)."""
    return text.translate(_FOLD)


@dataclass(frozen=True, kw_only=True)
class Wording:
    """One known wording and what an answer worded so means."""

    #: What it matches, on folded text: lower case, no accents, words apart by spaces.
    pattern: str
    outcome: Outcome
    #: The lookup's ``final_reason`` when it is not the outcome itself.
    reason: AnswerReason | None = None
    #: As the site writes it (the docs and the tests use it).
    example: str

    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One space in the pattern takes any run of white space in the text.
        regex = re.compile(r"\b" + self.pattern.replace(" ", " +") + r"\b")
        object.__setattr__(self, "regex", regex)


_RIGHTS = "(perdida|suspension)( [oy] (perdida|suspension))? de (los )?derechos politicos"

RIGHTS_SUSPENDED = Wording(
    pattern=f"(vigente con|baja por|cancelad[ao] por) (la )?{_RIGHTS}",
    outcome=Outcome.CANCELLED,
    reason=AnswerReason.RIGHTS_SUSPENDED,
    example="Vigente con Pérdida o Suspensión de los Derechos Políticos",
)
CANCELLED = Wording(
    pattern=r"cancelad[ao] por \w+",
    outcome=Outcome.CANCELLED,
    example="Cancelada por Muerte",
)
NOT_ENABLED = Wording(
    pattern="no (se encuentra|esta) habilitad[oa] para votar",
    outcome=Outcome.NOT_FOUND,
    reason=AnswerReason.NOT_ENABLED,
    example="no se encuentra habilitado para votar",
)
PENDING_REQUEST = Wording(
    pattern="(pendiente por )?solicitud en proceso",
    outcome=Outcome.NOT_FOUND,
    reason=AnswerReason.PENDING_REQUEST,
    example="Pendiente por Solicitud en proceso",
)
NOT_IN_CENSUS = Wording(
    pattern="no se encuentra en el censo",
    outcome=Outcome.NOT_FOUND,
    example="La cédula no se encuentra en el censo para esta elección",
)

#: Every known wording, the first match winning: the one table (module docstring).
WORDINGS: tuple[Wording, ...] = (
    RIGHTS_SUSPENDED,
    CANCELLED,
    NOT_ENABLED,
    PENDING_REQUEST,
    NOT_IN_CENSUS,
)


@dataclass(frozen=True, kw_only=True)
class Reading:
    """A text read against the wordings: the entry that matched, and where."""

    wording: Wording
    #: The text as read: composed (NFC), so that "e" + a combining accent is one "é".
    text: str
    start: int
    end: int

    @property
    def words(self) -> str:
        """The matched words, as the text wrote them."""
        return self.text[self.start : self.end]


def read(text: str, among: tuple[Wording, ...] = WORDINGS) -> Reading | None:
    """The first of ``among`` that ``text`` carries, or None: no known wording. Linear in
    the text's length."""
    composed = unicodedata.normalize("NFC", text)
    folded = fold(composed)
    for wording in among:
        match = wording.regex.search(folded)
        if match is not None:
            return Reading(wording=wording, text=composed, start=match.start(), end=match.end())
    return None
