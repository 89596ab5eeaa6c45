"""The one table of the census site's wordings: real texts, accents, case and spacing."""

from __future__ import annotations

import pytest

from census.outcomes import AnswerReason, Outcome
from census.scraper import wordings
from census.scraper.wordings import WORDINGS, fold, read

CANCELLED, NOT_FOUND = Outcome.CANCELLED, Outcome.NOT_FOUND
RIGHTS = AnswerReason.RIGHTS_SUSPENDED
NOT_ENABLED, PENDING = AnswerReason.NOT_ENABLED, AnswerReason.PENDING_REQUEST

#: Real wordings (census-site.md), and the ways the same words may come: accents dropped,
#: upper or lower case, runs of spaces, tabs, non-breaking spaces, inside a longer message.
WORDED: list[tuple[str, Outcome, AnswerReason | None]] = [
    ("Cancelada por Muerte", CANCELLED, None),
    ("Cancelada por Doble Cedulación", CANCELLED, None),
    ("Cancelada por Falsa Identidad", CANCELLED, None),
    ("CANCELADA POR MUERTE", CANCELLED, None),
    ("cancelada  por\tdoble cedulacion", CANCELLED, None),
    ("Cancelada\u00a0por Suplantación", CANCELLED, None),
    ("La cédula 3012345678 presenta una novedad: Cancelada por Muerte", CANCELLED, None),
    ("La cédula 31.234.567 fue cancelada por doble cedulación", CANCELLED, None),
    ("Cancelado por Muerte", CANCELLED, None),
    ("Vigente con Pérdida o Suspensión de los Derechos Políticos", CANCELLED, RIGHTS),
    ("VIGENTE CON PERDIDA O SUSPENSION DE LOS DERECHOS POLITICOS", CANCELLED, RIGHTS),
    ("vigente con pérdida o suspensión de los derechos políticos", CANCELLED, RIGHTS),
    ("Vigente  con\u00a0Pérdida o\nSuspensión de los Derechos  Políticos", CANCELLED, RIGHTS),
    ("Baja por Pérdida o Suspensión de los Derechos Políticos", CANCELLED, RIGHTS),
    ("BAJA POR PÉRDIDA O SUSPENSIÓN DE LOS DERECHOS POLÍTICOS", CANCELLED, RIGHTS),
    ("Cancelada por Pérdida o Suspensión de los Derechos Políticos", CANCELLED, RIGHTS),
    ("Cancelada por Pérdida de derechos políticos", CANCELLED, RIGHTS),
    ("Vigente con Suspensión de Derechos Políticos", CANCELLED, RIGHTS),
    # Decomposed accents (e + U+0301) read like precomposed ones.
    (
        "Vigente con Pe\u0301rdida o Suspensio\u0301n de los Derechos Poli\u0301ticos",
        CANCELLED,
        RIGHTS,
    ),
    ("no se encuentra habilitado para votar", NOT_FOUND, NOT_ENABLED),
    ("No se encuentra habilitado para votar", NOT_FOUND, NOT_ENABLED),
    ("NO SE ENCUENTRA HABILITADO PARA VOTAR", NOT_FOUND, NOT_ENABLED),
    ("La cédula 1012345678 no se encuentra habilitada para votar.", NOT_FOUND, NOT_ENABLED),
    ("El ciudadano no está habilitado para votar", NOT_FOUND, NOT_ENABLED),
    ("Pendiente por Solicitud en proceso", NOT_FOUND, PENDING),
    ("PENDIENTE POR SOLICITUD EN PROCESO", NOT_FOUND, PENDING),
    ("pendiente  por solicitud\ten proceso", NOT_FOUND, PENDING),
    ("Solicitud en proceso", NOT_FOUND, PENDING),
    ("La cédula 2012345678 no se encuentra en el censo para esta elección", NOT_FOUND, None),
    ("El documento 2012345678 no se encuentra en el censo para esta elección.", NOT_FOUND, None),
    ("LA CÉDULA NO SE ENCUENTRA EN EL CENSO PARA ESTA ELECCIÓN", NOT_FOUND, None),
    ("la cedula no  se encuentra\u00a0en el\ncenso", NOT_FOUND, None),
]

#: Texts in no known wording: each is an answer in no known shape, never a guess.
UNWORDED = [
    "",
    "Vigente",
    "Cancelada",
    "Cancelada por",
    "Baja",
    "En verificación de identidad",
    "La cédula 2012345678 no registra información para esta elección",
    "No se encontró información",
    "Consulta realizada",
    "no se encuentra en el sistema",
    "habilitado para votar",
    "Pendiente",
    "encanceladas por muerte",  # a word that only contains the wording is not it
]


@pytest.mark.parametrize(("text", "outcome", "reason"), WORDED)
def test_each_real_wording_gives_its_outcome_and_reason(
    text: str, outcome: Outcome, reason: AnswerReason | None
) -> None:
    """A real wording, however accented, cased or spaced, reads as its outcome and reason."""
    reading = read(text)
    assert reading is not None, text
    assert (reading.wording.outcome, reading.wording.reason) == (outcome, reason)


@pytest.mark.parametrize("text", UNWORDED)
def test_texts_in_no_known_wording_read_as_none(text: str) -> None:
    """A text no entry matches is None: the parser makes it an unexpected answer."""
    assert read(text) is None


def test_the_reading_points_at_the_words_in_the_text() -> None:
    """The match's position is the text's, accents and spacing included."""
    text = "La cédula   ****678 NO SE ENCUENTRA  en el censo para esta elección"
    reading = read(text)
    assert reading is not None
    assert (reading.text, reading.words) == (text, "NO SE ENCUENTRA  en el censo")


def test_only_the_wordings_asked_for_are_read() -> None:
    """``among`` narrows the table (the rendered page's free text: the not-found message)."""
    assert read("Cancelada por Muerte", among=(wordings.NOT_IN_CENSUS,)) is None
    reading = read("no se encuentra en el censo", among=(wordings.NOT_IN_CENSUS,))
    assert reading is not None and reading.wording is wordings.NOT_IN_CENSUS


def test_every_wording_reads_its_own_example() -> None:
    """Each entry's example, as the site writes it, is read as that entry (the first match)."""
    for wording in WORDINGS:
        reading = read(wording.example)
        assert reading is not None and reading.wording is wording, wording.example


def test_the_table_holds_each_answer_outcome_and_reason() -> None:
    """The table gives only census answers other than found, and every AnswerReason once."""
    assert {w.outcome for w in WORDINGS} == {CANCELLED, NOT_FOUND}
    reasons = [w.reason for w in WORDINGS if w.reason is not None]
    assert sorted(reasons) == sorted(AnswerReason)
    assert wordings.NOT_IN_CENSUS in WORDINGS


@pytest.mark.parametrize(
    "text", ["Pérdida", "DERECHOS POLÍTICOS", "a\u00a0b\tc\nd", "ß ﬁ İ Ñ", "e\u0301", ""]
)
def test_fold_keeps_the_length(text: str) -> None:
    """Folding maps each character to one, so positions in the folded text are the text's."""
    folded = fold(text)
    assert len(folded) == len(text)
    assert folded == folded.lower() or any(ch in text for ch in "ßﬁİ")
