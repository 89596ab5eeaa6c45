"""Turn what the census site answered into a ``LookupResult``. Pure: no I/O, no Playwright.

Two entry points: ``parse_consulta`` reads the ``POST /back/api/consulta`` response (the
usual path) and ``parse_rendered_page`` reads the page's HTML when no response was captured.
Every ``detail`` is scrubbed of the cédula: answers echo it (``nuip``, the not-found message).

Hostile answers stay cheap and bounded: only the first ``MAX_BODY_CHARS`` of a consulta body
(``MAX_PAGE_CHARS`` of a rendered page) are read, and a JSON body longer than that is
``unexpected_page``; nesting depth never raises ``RecursionError`` and the HTML reader is linear
in the number of tags; every place and novedad field is cut to ``MAX_FIELD_CHARS`` and every
``detail`` to ``EXCERPT_CHARS``; ``Retry-After`` is a finite number of seconds in
``[0, MAX_RETRY_AFTER_SECONDS]`` (or None).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any

from census.cedula import scrub
from census.limits import MAX_RETRY_AFTER_SECONDS, clamp_seconds
from census.outcomes import Outcome
from census.scraper.base import LookupResult, Novedad, Place

#: Characters of page or body text kept in ``detail``.
EXCERPT_CHARS = 500
#: Characters of a consulta response body that are read; a longer JSON body is not an answer.
MAX_BODY_CHARS = 256 * 1024
#: Characters of a rendered page that are read (a page carries inline styles and scripts).
MAX_PAGE_CHARS = 1024 * 1024
#: Characters kept of each place and novedad field (the database columns are shorter still).
MAX_FIELD_CHARS = 200
#: Longest wait a ``Retry-After`` header can ask for; longer (or infinite) asks are cut to it.
#: Longest ``Retry-After`` value read at all (an HTTP date is 29 characters).
_MAX_RETRY_AFTER_CHARS = 64
#: Characters of the ``Content-Type`` header that are read.
_MAX_CONTENT_TYPE_CHARS = 200

_DELAY_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
_CAPTCHA_ERROR = re.compile(r"captcha|token|expir", re.IGNORECASE)
_F5_PHRASE = re.compile(r"the requested url was rejected", re.IGNORECASE)
_SUPPORT_ID = re.compile(r"support\s+id\s*(?:is)?\s*:?\s*(\d{6,})", re.IGNORECASE)
_NOT_FOUND_PHRASE = re.compile(r"no se encuentra en el censo", re.IGNORECASE)
_F5_CLASSES = frozenset({"blocked", "authenticate"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript"})
#: Something that looks like a tag, for the unparsed tail (no ``<`` inside: linear).
_TAG_LIKE = re.compile(r"<[^<>]*>")
#: Longest tail ``HTMLParser.close`` is left to finish (its cost grows with the square).
_MAX_UNPARSED_TAIL = 4096


def parse_consulta(
    status: int,
    content_type: str,
    body: str,
    headers: Mapping[str, str],
    cedula: str,
    *,
    now: float | None = None,
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
) -> LookupResult:
    """Classify one response of ``POST /back/api/consulta``.

    ``now`` and ``max_retry_after`` are for ``Retry-After`` (see ``parse_retry_after``). Only
    the first ``MAX_BODY_CHARS`` of ``body`` are read; a longer body is never taken as a JSON
    answer (``unexpected_page``, or ``blocked`` with a 403).
    """
    meta: dict[str, str | int | float | None] = {"http_status": status}
    if status == 429:
        retry_after = parse_retry_after(
            _header(headers, "retry-after"), now=now, max_seconds=max_retry_after
        )
        return LookupResult(
            outcome=Outcome.BLOCKED,
            detail=f"HTTP 429 Too Many Requests (Retry-After: {_fmt_seconds(retry_after)})",
            retry_after=retry_after,
            meta=meta,
        )
    content_type = (content_type or "")[:_MAX_CONTENT_TYPE_CHARS]
    oversized = len(body) > MAX_BODY_CHARS
    if oversized:
        body = body[:MAX_BODY_CHARS]
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
    answer = None if oversized else _load_json_object(body)
    if answer is not None:
        result = _parse_answer_safely(answer, cedula)
        if status == 403 and result.outcome is not Outcome.CAPTCHA_FAILED:
            return LookupResult(outcome=Outcome.BLOCKED, detail="HTTP 403 Forbidden", meta=meta)
        return _with_meta(result, meta)
    if status == 403:
        return LookupResult(outcome=Outcome.BLOCKED, detail="HTTP 403 Forbidden", meta=meta)
    text = _read_html(body).text if looks_html else body
    size = f" (body over {MAX_BODY_CHARS} characters, not read further)" if oversized else ""
    return LookupResult(
        outcome=Outcome.UNEXPECTED_PAGE,
        detail=_excerpt(f"HTTP {status} {content_type or 'no content type'}{size}: {text}", cedula),
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
            departamento=_field(data.get("nom_depto")),
            municipio=_field(data.get("nom_mun")),
            puesto=_field(data.get("nom_puesto")),
            direccion=_field(data.get("direccion")),
            mesa=_field(data.get("mesa")),
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
    """Classify the page as rendered after the submit (fallback when no JSON was captured).

    Only the first ``MAX_PAGE_CHARS`` of ``html`` are read.
    """
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
                    novedad=_field(values.get("novedad"), cedula),
                    resolucion=_field(values.get("resolucion"), cedula),
                    fecha_novedad=_field(values.get("fecha novedad"), cedula),
                ),
            )
        if "departamento" in values and "municipio" in values:
            return LookupResult(
                outcome=Outcome.FOUND,
                place=Place(
                    departamento=_field(values.get("departamento")),
                    municipio=_field(values.get("municipio")),
                    puesto=_field(values.get("puesto")),
                    direccion=_field(values.get("direccion")),
                    mesa=_field(values.get("mesa")),
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


def parse_retry_after(
    value: str | None,
    *,
    now: float | None = None,
    max_seconds: float = MAX_RETRY_AFTER_SECONDS,
) -> float | None:
    """Seconds from ``Retry-After`` (delta seconds or an HTTP date), or None.

    The answer is always finite and in ``[0, max_seconds]``: negative delays and dates in the
    past give 0, ``inf``, ``1e12`` or a date in year 9999 give ``max_seconds``. None when there
    is no header or it is not a number of seconds (ASCII digits, optional sign, fraction and
    exponent) nor an HTTP date with a time zone: garbage, ``nan``, values over 64 characters.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_RETRY_AFTER_CHARS:
        return None
    if _DELAY_SECONDS.fullmatch(value) or _INFINITY.fullmatch(value):
        return clamp_seconds(float(value), max_seconds)
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return clamp_seconds(seconds, max_seconds)


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
        self._open: Counter[str] = Counter()  # tags on the stack, so an end tag is O(1)
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
            self._open[tag] += 1
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
        if not self._open[tag]:
            return  # a stray end tag closes nothing
        while self._stack:
            open_tag = self._pop()
            self._close(open_tag)
            if open_tag == tag:
                break

    def _pop(self) -> str:
        tag, _ = self._stack.pop()
        self._open[tag] -= 1
        return tag

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
            self._close(self._pop())
        self.page.text = _squash("".join(self._chunks))
        return self.page


def _read_html(html: str) -> _Page:
    """Read the first ``MAX_PAGE_CHARS`` of ``html``; linear in its size and nesting depth.

    ``HTMLParser.close`` rescans to the end of the input for every construct left open
    (``<a<a<a...``, ``</</...``, ``<?<?...`` take minutes for 256 KiB), so a long tail that
    ``feed`` could not finish is read here as text instead, with whatever looks like a tag
    dropped.
    """
    reader = _PageReader()
    reader.feed(html[:MAX_PAGE_CHARS])
    tail = reader.rawdata
    if len(tail) > _MAX_UNPARSED_TAIL:
        reader.rawdata = ""
        reader.handle_data(unescape(_TAG_LIKE.sub(" ", tail)))
    return reader.finish()


def _parse_answer_safely(answer: Mapping[str, Any], cedula: str) -> LookupResult:
    """``parse_answer``, with a too deeply nested answer as ``unexpected_page``."""
    try:
        return parse_answer(answer, cedula)
    except RecursionError:
        return LookupResult(
            outcome=Outcome.UNEXPECTED_PAGE, detail="answer nested too deeply to read"
        )


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
        novedad=_field(text, cedula),
        resolucion=_field(resolucion, cedula),
        fecha_novedad=_field(fecha, cedula),
    )


def _load_json_object(body: str) -> Mapping[str, Any] | None:
    try:
        value = json.loads(body)
    except (TypeError, ValueError, RecursionError):  # RecursionError: [[[[... nested deep
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
    try:
        text = value if isinstance(value, str) else str(value)
    except (RecursionError, ValueError):  # deeply nested lists; an int too long to print
        return ""
    return _squash(text)


def _field(value: Any, cedula: str | None = None) -> str:
    """A place or novedad field: squashed text, scrubbed when ``cedula`` is given, bounded."""
    text = _text(value)
    if cedula is not None:
        text = scrub(text, cedula)  # before cutting, so a cut never leaves digits unmasked
    return text[:MAX_FIELD_CHARS]


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
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError, TypeError):
        return "(answer that cannot be written back as JSON)"


def _fmt_seconds(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}s"
