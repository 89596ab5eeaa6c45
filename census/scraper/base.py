"""The scraper contract: a normalised cédula in, one ``LookupResult`` out, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from census.outcomes import Outcome


@dataclass(frozen=True, kw_only=True)
class Place:
    """Where a found cédula votes."""

    departamento: str = ""
    municipio: str = ""
    puesto: str = ""
    direccion: str = ""
    mesa: str = ""


@dataclass(frozen=True, kw_only=True)
class Novedad:
    """Why a cédula is cancelled."""

    novedad: str = ""
    resolucion: str = ""
    fecha_novedad: str = ""


@dataclass(frozen=True, kw_only=True)
class LookupResult:
    """What one lookup found out. Carries no cédula: ``detail`` is scrubbed by the scraper."""

    outcome: Outcome
    place: Place | None = None
    novedad: Novedad | None = None
    #: Short human-readable explanation (error text, HTTP status, bounded page excerpt).
    detail: str = ""
    #: Seconds the site asked us to wait (HTTP 429 ``Retry-After``), if any.
    retry_after: float | None = None
    #: Extra facts for debugging (HTTP status, URL path, ...): literals only.
    meta: dict[str, str | int | float | None] = field(default_factory=dict)

    def with_detail(self, detail: str) -> LookupResult:
        return replace(self, detail=detail)


@runtime_checkable
class Scraper(Protocol):
    """Looks up one normalised cédula (digits only, already validated)."""

    def lookup(self, cedula: str) -> LookupResult: ...
