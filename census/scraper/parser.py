"""Turn what the census site answered into a ``LookupResult``. Pure: no I/O, no Playwright.

Two entry points: ``parse_consulta`` reads the ``POST /back/api/consulta`` response (the
usual path) and ``parse_rendered_page`` reads the page's HTML when no response was captured.
Every ``detail`` is scrubbed of the cédula: answers echo it (``nuip``, the not-found message).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from census.cedula import scrub
from census.outcomes import Outcome
from census.scraper.base import LookupResult, Novedad, Place

#: Characters of page or body text kept in ``detail``.
EXCERPT_CHARS = 500

_CAPTCHA_ERROR = re.compile(r"captcha|token|expir", re.IGNORECASE)
_F5_PHRASE = re.compile(r"the requested url was rejected", re.IGNORECASE)
_SUPPORT_ID = re.compile(r"support\s+id\s*(?:is)?\s*:?\s*(\d{6,})", re.IGNORECASE)
_NOT_FOUND_PHRASE = re.compile(r"no se encuentra en el censo", re.IGNORECASE)
_F5_CLASSES = frozenset({"blocked", "authenticate"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript"})


def parse_consulta(
    status: int,
    content_type: str,
    body: str,
    headers: Mapping[str, str],
    cedula: str,
    *,
    now: float | None = None,
) -> LookupResult:
    """Classify one response of ``POST /back/api/consulta``; ``now`` is for ``Retry-After``."""
    meta: dict[str, str | int | float | None] = {"http_status": status}
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "retry-after"), now=now)
        return LookupResult(
            outcome=Outcome.BLOCKED,
            detail=f"HTTP 429 Too Many Requests (Retry-After: {_fmt_seconds(retry_after)})",
            retry_after=retry_after,
            meta=meta,
        )
    looks_html = "html" in content_type.lower() or body.lstrip()[:1] == "<"
    if looks_html:
        page = _read_html(body)
        if page.is_f5_block:
            return _blocked_page(page, meta, cedula)
    if status >= 500:
        text = _read_html(body).text if looks_html else body
        return LookupResult(
            outcome=Outcome.CONNECTION_ERROR,
            detail=_excerpt(f"HTTP {status}: {text}", cedula),
            meta=meta,
        )
    answer = _load_json_object(body)
    if answer is not None:
        result = parse_answer(answer, cedula)
        if status == 403 and result.outcome is not Outcome.CAPTCHA_FAILED:
            return LookupResult(outcome=Outcome.BLOCKED, detail="HTTP 403 Forbidden", meta=meta)
        return _with_meta(result, meta)
    if status == 403:
        return LookupResult(outcome=Outcome.BLOCKED, detail="HTTP 403 Forbidden", meta=meta)
    text = _read_html(body).text if looks_html else body
    return LookupResult(
        outcome=Outcome.UNEXPECTED_PAGE,
        detail=_excerpt(f"HTTP {status} {content_type or 'no content type'}: {text}", cedula),
        meta=meta,
    )


def parse_answer(answer: Mapping[str, Any], cedula: str) -> LookupResult:
    """Classify the decoded JSON answer of the consulta endpoint (keys in any case)."""
    top = _lower_keys(answer)
    if "ok" not in top:
        return LookupResult(
            outcome=Outcome.UNEXPECTED_PAGE,
            detail=_excerpt(f"answer without ok: {_dump(answer)}", cedula),
        )
    if not top.get("ok"):
        error = _text(top.get("error") or top.get("mensaje") or "ok is false")
        outcome = Outcome.CAPTCHA_FAILED if _CAPTCHA_ERROR.search(error) else None
        return LookupResult(
            outcome=outcome or Outcome.UNEXPECTED_PAGE,
            detail=_excerpt(f"site error: {error}", cedula),
        )
    data = top.get("data")
    data = _lower_keys(data) if isinstance(data, Mapping) else {}
    if top.get("novedad") or data.get("novedad"):
        return LookupResult(outcome=Outcome.CANCELLED, novedad=_novedad(top, data, cedula))
    if top.get("encontrado"):
        place = Place(
            departamento=_text(data.get("nom_depto")),
            municipio=_text(data.get("nom_mun")),
            puesto=_text(data.get("nom_puesto")),
            direccion=_text(data.get("direccion")),
            mesa=_text(data.get("mesa")),
        )
        if not (place.departamento or place.municipio or place.puesto):
            return LookupResult(
                outcome=Outcome.UNEXPECTED_PAGE,
                detail=_excerpt(f"found answer without a place: {_dump(answer)}", cedula),
            )
        return LookupResult(outcome=Outcome.FOUND, place=place)
    message = _text(top.get("mensaje") or top.get("descripcion"))
    return LookupResult(outcome=Outcome.NOT_FOUND, detail=_excerpt(message, cedula))


def parse_rendered_page(html: str, cedula: str) -> LookupResult:
    """Classify the page as rendered after the submit (fallback when no JSON was captured)."""
    page = _read_html(html)
    if page.is_f5_block:
        return _blocked_page(page, {}, cedula)
    for table in page.tables:
        header = [_fold(cell) for cell in table[0]] if table else []
        rows = [row for row in table[1:] if any(row)]
        if not rows or len(header) < 2:
            continue
        values = dict(zip(header, rows[0], strict=False))
        if "novedad" in values:
            return LookupResult(
                outcome=Outcome.CANCELLED,
                novedad=Novedad(
                    novedad=scrub(values.get("novedad", ""), cedula),
                    resolucion=scrub(values.get("resolucion", ""), cedula),
                    fecha_novedad=scrub(values.get("fecha novedad", ""), cedula),
                ),
            )
        if "departamento" in values and "municipio" in values:
            return LookupResult(
                outcome=Outcome.FOUND,
                place=Place(
                    departamento=values.get("departamento", ""),
                    municipio=values.get("municipio", ""),
                    puesto=values.get("puesto", ""),
                    direccion=values.get("direccion", ""),
                    mesa=values.get("mesa", ""),
                ),
            )
    match = _NOT_FOUND_PHRASE.search(page.text)
    if match:
        return LookupResult(
            outcome=Outcome.NOT_FOUND, detail=_excerpt(_sentence(page.text, match), cedula)
        )
    return LookupResult(
        outcome=Outcome.UNEXPECTED_PAGE,
        detail=_excerpt(f"rendered page: {page.text}", cedula),
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from ``Retry-After`` (delta seconds or an HTTP date), or None."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def is_f5_block(html: str) -> bool:
    """True for the F5 BIG-IP rejection page (never because of the word "challenge")."""
    return _read_html(html).is_f5_block


# --- helpers -----------------------------------------------------------------------------


@dataclass
class _Page:
    """What the parser needs from an HTML page."""

    text: str = ""
    tables: list[list[list[str]]] = field(default_factory=list)
    f5_headings: list[str] = field(default_factory=list)
    title: str = ""

    @property
    def is_f5_block(self) -> bool:
        return bool(self.f5_headings) or bool(_F5_PHRASE.search(self.text))

    @property
    def support_id(self) -> str | None:
        match = _SUPPORT_ID.search(self.text)
        return match.group(1) if match else None


class _PageReader(HTMLParser):
    """Collects visible text, table cells and the headings inside F5's block boxes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = _Page()
        self._stack: list[tuple[str, bool]] = []  # (tag, inside an F5 box)
        self._skip = 0
        self._chunks: list[str] = []
        self._heading: list[str] | None = None
        self._title: list[str] | None = None
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = set((dict(attrs).get("class") or "").lower().split())
        in_f5 = bool(classes & _F5_CLASSES) or (self._stack[-1][1] if self._stack else False)
        if tag not in _VOID_TAGS:
            self._stack.append((tag, in_f5))
        if tag in _SKIPPED_TAGS:
            self._skip += 1
        elif tag == "h3" and in_f5:
            self._heading = []
        elif tag == "title":
            self._title = []
        elif tag == "table":
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4"):
            self._chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag not in {t for t, _ in self._stack}:
            return
        while self._stack:
            open_tag, _ = self._stack.pop()
            self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "h3" and self._heading is not None:
            self.page.f5_headings.append(_squash("".join(self._heading)))
            self._heading = None
        elif tag == "title" and self._title is not None:
            self.page.title = _squash("".join(self._title))
            self._title = None
        elif tag in ("td", "th") and self._cell is not None:
            if self._table is not None:
                if not self._table:
                    self._table.append([])
                self._table[-1].append(_squash("".join(self._cell)))
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.page.tables.append(self._table)
            self._table = None
        self._chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        for sink in (self._heading, self._title, self._cell):
            if sink is not None:
                sink.append(data)
        if self._title is None:
            self._chunks.append(data)

    def finish(self) -> _Page:
        self.close()
        while self._stack:
            self._close(self._stack.pop()[0])
        self.page.text = _squash("".join(self._chunks))
        return self.page


def _read_html(html: str) -> _Page:
    reader = _PageReader()
    reader.feed(html)
    return reader.finish()


def _blocked_page(
    page: _Page, meta: dict[str, str | int | float | None], cedula: str
) -> LookupResult:
    heading = page.f5_headings[0] if page.f5_headings else "The requested URL was rejected"
    support_id = page.support_id
    meta = {**meta, "support_id": support_id} if support_id else meta
    suffix = f" (support ID {support_id})" if support_id else ""
    detail = _excerpt(f"F5 block page: {heading}{suffix}", cedula)
    return LookupResult(outcome=Outcome.BLOCKED, detail=detail, meta=meta)


def _novedad(top: Mapping[str, Any], data: Mapping[str, Any], cedula: str) -> Novedad:
    flag = data.get("novedad") or top.get("novedad")
    text = flag if isinstance(flag, str) else ""
    text = text or _text(top.get("descripcion") or data.get("descripcion") or top.get("mensaje"))
    resolucion = data.get("resolucion") or top.get("resolucion")
    fecha = (
        data.get("fecha_novedad")
        or data.get("fechanovedad")
        or data.get("fecha")
        or top.get("fecha_novedad")
        or top.get("fecha")
    )
    return Novedad(
        novedad=_excerpt(_text(text), cedula),
        resolucion=_excerpt(_text(resolucion), cedula),
        fecha_novedad=_excerpt(_text(fecha), cedula),
    )


def _load_json_object(body: str) -> Mapping[str, Any] | None:
    try:
        value = json.loads(body)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, Mapping) else None


def _lower_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in mapping.items()}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _with_meta(result: LookupResult, meta: dict[str, str | int | float | None]) -> LookupResult:
    return LookupResult(
        outcome=result.outcome,
        place=result.place,
        novedad=result.novedad,
        detail=result.detail,
        retry_after=result.retry_after,
        meta={**result.meta, **meta},
    )


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    return _squash(str(value))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _fold(header: str) -> str:
    """Header cell to a plain key: ``DIRECCIÓN`` becomes ``direccion``."""
    table = str.maketrans("áéíóúÁÉÍÓÚ", "aeiouaeiou")
    return _squash(header).translate(table).lower()


def _sentence(text: str, match: re.Match[str]) -> str:
    start = max(text.rfind(".", 0, match.start()) + 1, match.start() - 200)
    end = text.find(".", match.end())
    return text[start : end + 1 if end != -1 else match.end() + 200].strip()


def _excerpt(text: str, cedula: str) -> str:
    # Scrub before cutting, so that a cut never leaves part of the number unmasked.
    clean = scrub(_squash(text), cedula)
    return clean if len(clean) <= EXCERPT_CHARS else clean[: EXCERPT_CHARS - 1] + "…"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _fmt_seconds(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}s"
