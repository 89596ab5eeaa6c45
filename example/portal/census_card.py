"""What the profile shows about a member's census lookup, as data for the page and the JSON."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from census.models import CedulaInfo, Status
from census.outcomes import AnswerReason

#: One sentence per status, for the member.
EXPLANATIONS: dict[Status, str] = {
    Status.PENDING: "Tu consulta está en cola; empieza en unos segundos.",
    Status.SCRAPING: "Estamos consultando el censo electoral de la Registraduría.",
    Status.RETRYING: "La Registraduría no respondió esta vez; lo intentaremos de nuevo.",
    Status.FOUND: "Tu cédula está en el censo electoral. Este es tu puesto de votación:",
    Status.NOT_FOUND: "Tu cédula no aparece en el censo electoral para esta elección.",
    Status.CANCELLED: "Tu cédula tiene una novedad en el censo electoral:",
    Status.ERROR: "No pudimos completar la consulta. Un líder puede pedir una nueva.",
}
#: For a final answer whose wording said more than its status (``final_reason``).
REASON_EXPLANATIONS: dict[str, str] = {
    AnswerReason.RIGHTS_SUSPENDED: (
        "Tu cédula tiene una novedad en el censo electoral: tus derechos políticos están "
        "suspendidos."
    ),
    AnswerReason.NOT_ENABLED: "Tu cédula no está habilitada para votar en esta elección:",
    AnswerReason.PENDING_REQUEST: (
        "Tu cédula tiene una solicitud en proceso en la Registraduría; consúltala de nuevo "
        "más adelante:"
    ),
}
NO_LOOKUP = "Todavía no hay una consulta del censo para tu cuenta."
UNCONFIRMED = "Confirma tu correo para ver el resultado: abre el enlace que te enviamos."


def unconfirmed_card() -> dict[str, Any]:
    """An account not confirmed yet (``portal.verification``): no status, no result. Final, so
    the page does not poll; following the link loads it again."""
    return {"status": None, "label": "Sin confirmar", "final": True, "explanation": UNCONFIRMED}


def census_card(info: CedulaInfo | None) -> dict[str, Any]:
    """The lookup's state for the template and ``JsonResponse`` (datetimes become ISO 8601)."""
    if info is None:
        return {"status": None, "label": "Sin consulta", "final": True, "explanation": NO_LOOKUP}
    status = info.current_status
    card: dict[str, Any] = {
        "status": status.value,
        "label": str(status.label),
        "final": status.is_final,
        "explanation": _explanation(info, status),
        "status_changed_at": info.status_changed_at,
        "next_attempt_at": info.next_attempt_at if status == Status.RETRYING else None,
        "place": None,
        "novedad": None,
    }
    if status == Status.FOUND:
        card["place"] = {
            "departamento": info.departamento,
            "municipio": info.municipio,
            "puesto": info.puesto,
            "direccion": info.direccion,
            "mesa": info.mesa,
            "coddivipol": info.coddivipol,
        }
    elif status == Status.CANCELLED or (status == Status.NOT_FOUND and info.novedad):
        card["novedad"] = {
            "novedad": info.novedad,
            "resolucion": info.resolucion,
            "fecha_novedad": info.fecha_novedad,
        }
    return card


def _explanation(info: CedulaInfo, status: Status) -> str:
    if status.is_final and info.final_reason in REASON_EXPLANATIONS:
        return REASON_EXPLANATIONS[info.final_reason]
    return EXPLANATIONS[status]


def render_card(card: dict[str, Any]) -> str:
    """The HTML fragment the profile shows, and the one its script swaps in."""
    return render_to_string("portal/_census_card.html", {"card": card})
