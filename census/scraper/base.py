"""The scraper contract: a normalised cédula in, one ``LookupResult`` out, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from census.limits import MAX_RETRY_AFTER_SECONDS
from census.outcomes import AnswerReason, Outcome


@dataclass(frozen=True, kw_only=True)
class Place:
    """Where a found cédula votes."""

    departamento: str = ""
    municipio: str = ""
    puesto: str = ""
    direccion: str = ""
    mesa: str = ""
    #: The polling place's DIVIPOL code when the answer carries one: digits only, or "".
    coddivipol: str = ""


@dataclass(frozen=True, kw_only=True)
class Novedad:
    """The novelty the census records on a cédula (cancelled, rights suspended, ...)."""

    novedad: str = ""
    resolucion: str = ""
    fecha_novedad: str = ""


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """What the page looked like when its answer had no known shape (``unexpected_page``).

    Every text is scrubbed of the cédula and bounded by the scraper; the screenshot was taken
    with the cédula's input masked. Kept once per signature (``census.observability.snapshots``).
    """

    #: The rendered page's HTML, scrubbed, at most ``SNAPSHOT_HTML_CHARS`` characters.
    html: str = ""
    #: The consulta response's body (when one was read), scrubbed and bounded the same way.
    body: str = ""
    #: A PNG screenshot of the viewport, or None (too large, or the page could not be shot).
    png: bytes | None = None
    #: The page's URL path (no query string: it may carry the number).
    path: str = ""


#: Characters of a snapshot's HTML (and of its response body) that are kept.
SNAPSHOT_HTML_CHARS = 256 * 1024
#: Bytes of a screenshot that are kept; a larger PNG is dropped (the HTML is kept).
SNAPSHOT_PNG_BYTES = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class LookupResult:
    """What one lookup found out. Carries no cédula: ``detail`` is scrubbed by the scraper."""

    outcome: Outcome
    place: Place | None = None
    novedad: Novedad | None = None
    #: What the answer's wording says beyond its outcome (``census.scraper.wordings``):
    #: the lookup's ``final_reason`` when it ends on this answer. None: the outcome says all.
    reason: AnswerReason | None = None
    #: Short human-readable explanation (error text, HTTP status, bounded page excerpt).
    detail: str = ""
    #: Seconds the site asked us to wait (HTTP 429 ``Retry-After``), if any.
    retry_after: float | None = None
    #: Extra facts for debugging (HTTP status, URL path, ...): literals only. An
    #: ``unexpected_page`` carries ``meta["signature"]``: which shape check failed.
    meta: dict[str, str | int | float | None] = field(default_factory=dict)
    #: For an ``unexpected_page`` from a browser: the page as the scraper saw it.
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    def with_detail(self, detail: str) -> LookupResult:
        return replace(self, detail=detail)


#: The real site's lookup page (``CENSUS_SITE_URL``'s default).
SITE_URL = "https://consultacenso.registraduria.gov.co/consultar/"


@dataclass(frozen=True, kw_only=True)
class ScraperConfig:
    """What one lookup needs from the settings: read by the caller, frozen, handed over."""

    site_url: str = SITE_URL
    #: Seconds the whole lookup may take.
    timeout: float = 90.0
    #: Chromium binary; None picks Playwright's own build, else /usr/bin/chromium.
    executable: str | None = None
    #: Dotted path of ``callable(site_key, page_url) -> token | None``.
    solver_path: str | None = None
    #: Seconds the solver may take on top of ``timeout``: the page's budget stops while it
    #: runs (a token asked ahead takes no time; a solve inside the attempt ~30 s).
    solve_timeout: float = 0.0
    headless: bool = True
    #: Longest wait a Retry-After may ask for, whatever its form.
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS
    #: Browsers at once on this host (every worker and cluster); 0: no limit.
    browsers_per_host: int = 0
    #: Seconds a lookup waits for a free browser before it is deferred (not charged).
    browser_wait: float = 10.0
    #: Directory of the host-wide browser slots (None: census.scraper.slots.default_dir()).
    slots_dir: str | None = None


@runtime_checkable
class Scraper(Protocol):
    """Looks up one cédula, given as its canonical digits (``census.cedula.normalize``'s
    result: 3 to 10 ASCII digits, no leading zero), which the task passes; a lookup does not
    normalise it again and may refuse anything else as ``invalid_cedula``.

    Built by the pipeline as ``ScraperClass(gate=..., config=...)``. Site failures are
    outcomes; an unexpected exception is a bug, raised with its traceback (the pipeline
    stores it on the attempt and retries).
    """

    def lookup(self, cedula: str) -> LookupResult: ...


def site_changed(result: LookupResult, opens_in: float) -> LookupResult:
    """An answer in no known shape while the site counts as changed: not the member's to pay
    for. Deferred like a block (whether or not it was sent), keeping its signature, detail
    and snapshot; the gate opens for a probe in ``opens_in`` s."""
    wait = max(opens_in, 0.0)
    signature = result.meta.get("signature") or "unknown"
    return replace(
        result,
        outcome=Outcome.DEFERRED,
        detail=f"site_changed: {signature}; the gate opens in {wait:.0f} s; {result.detail}",
        retry_after=wait,
    )
