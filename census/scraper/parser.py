"""Turn what the census site answered into a ``LookupResult``. Pure: no I/O, no Playwright.

Two entry points: ``parse_consulta`` reads the ``POST /back/api/consulta`` response (the
usual path) and ``parse_rendered_page`` reads the page's HTML when no response was captured.
Every ``detail`` is scrubbed of the cédula: answers echo it (``nuip``, the not-found message).

Every answer is checked against the shapes the site is known to send (``census-site.md``,
``docs/simulator.md``); anything else is ``unexpected_page``, never a guess: a renamed or
retyped field must not turn into a wrong final answer. An ``ok: true`` answer needs a boolean
``encontrado`` (a truthy ``novedad``, at the top or in ``data``, is a novelty whatever
``encontrado`` says, but a present ``encontrado`` must still be a boolean); an ``ok: false``
answer is a captcha rejection or unknown. A field is type-checked whenever it is present, and
required when the outcome depends on it.

What a novelty or a not-found answer means is in its words: its text is read against
``census.scraper.wordings.WORDINGS`` (the one table), which gives the outcome and the reason.
A novelty whose texts (``novedad`` when it is a text, ``descripcion``, ``mensaje``) carry no
known wording, and a not-found answer whose ``mensaje``/``descripcion`` carries neither the
not-found phrase ("no se encuentra en el censo") nor another known wording, are
``unexpected_page``: a reworded answer counts toward the site-changed breaker, never as a
silent ``not_found``. A found answer's ``coddivipol`` (any key case) is kept when it is 1 to
``MAX_CODE_DIGITS`` ASCII digits and does not contain the cédula; otherwise it is dropped.

Signatures
----------
Every ``unexpected_page`` returned by a public function carries ``meta["signature"]``: which
check failed, ``<where>:<check>[:<detail>]``, lower case, at most ``SIGNATURE_CHARS``. The
same cause always gives the same signature (no timestamps, support ids, references), and a
signature never holds a digit of the cédula: its parts are fixed words, HTTP status codes,
a media type (parameters dropped, only ``[a-z0-9./+-]`` kept, runs of 3+ digits turned to
``0``, cut to 40 characters), field names from ``SIGNATURE_FIELDS``, and hashes.

==========================================  ================================================
signature                                   check that failed
==========================================  ================================================
``consulta:status:<code>``                  HTTP status not 2xx, 403, 429 nor 5xx (those
                                            are blocked / connection_error); ``<code>`` is
                                            the status, ``invalid`` outside 100-599. A
                                            captcha rejection keeps ``captcha_failed``.
``consulta:html_page``                      2xx body is markup, and not the F5 block page
``consulta:content_type:<media type>``      2xx body is not markup and its media type is not
                                            JSON (``application/json``, ``text/json``,
                                            ``*/*+json``); ``none`` when absent
``consulta:oversized``                      JSON body over ``MAX_BODY_CHARS``
``consulta:empty_body``                     JSON body empty or blank
``consulta:not_json``                       JSON body does not decode (e.g. truncated)
``consulta:too_deep``                       JSON body nested deeper than the decoder reads
``consulta:not_object``                     JSON body is not an object (a list, a number...)
``answer:not_object``                       ``parse_answer`` was given no mapping
``answer:duplicate_key:<field>``            two keys differ only in case (``ok``/``OK``)
``answer:missing_field:ok``                 no ``ok`` (e.g. the answer wrapped in another key)
``answer:bad_type:ok``                      ``ok`` is not a boolean
``answer:missing_field:error``              ``ok: false`` without an ``error``/``mensaje``
``answer:bad_type:error``                   that error is not a string
``answer:unknown_error:<hash>``             ``ok: false`` with an error that is no captcha
                                            rejection; ``<hash>``: see below
``answer:bad_type:data``                    ``data`` is not an object (nor null, nor ``[]``)
``answer:bad_type:encontrado``              ``encontrado`` is present and not a boolean
``answer:missing_field:encontrado``         ``ok: true``, no novedad, and no ``encontrado``
``answer:bad_type:<place field>``           a place field (``nom_depto``, ``nom_mun``,
                                            ``nom_puesto``, ``direccion``, ``mesa``) of a
                                            found answer is not a string, number or null
``answer:found_without_place``              found, but no departamento, municipio or puesto
``answer:novedad_without_text``             a truthy ``novedad`` and no text to read (no
                                            text ``novedad``, ``descripcion``, ``mensaje``)
``answer:unknown_novedad:<hash>``           a novelty whose texts carry no known wording;
                                            ``<hash>`` of the first text, as for errors
``answer:missing_field:mensaje``            ``encontrado: false``, no novelty, and neither
                                            ``mensaje`` nor ``descripcion``
``answer:unknown_message:<hash>``           ``encontrado: false``, no novelty, and a message
                                            with no known wording (a reworded not-found);
                                            ``<hash>`` of the message, as for errors
``answer:too_deep``                         the answer is nested too deeply to read
``page:found_without_place``                rendered found table without a place
``page:unknown_table``                      rendered table with a ``NUIP`` column but neither
                                            the found nor the cancelled columns
``page:novedad_without_text``               rendered novelty table with an empty NOVEDAD
``page:unknown_novedad:<hash>``             rendered NOVEDAD in no known wording
``page:oversized``                          nothing known in the first ``MAX_PAGE_CHARS`` of
                                            a longer page
``page:missing_element:resultado``          the rendered page shows no known result (found
                                            or cancelled table, not-found message)
==========================================  ================================================

``<where>`` is the function: ``consulta`` (``parse_consulta``: the HTTP envelope, also used for
the page load's own response), ``answer`` (the decoded JSON, via either function), ``page``
(``parse_rendered_page``). Field names in signatures come from ``SIGNATURE_FIELDS``.

The error hash (also that of an unknown novelty or message) is the first 6 hex digits of the
SHA-256 of the text with every number replaced by one ``0`` (a number: digits with single
``census.cedula.SEPARATORS`` between them, as ``scrub`` reads an echo: ``15008``,
``31.234.567``, ``1 012 345 678``), whitespace squashed and lower-cased: the same error
echoing another cédula, of another length, or another count of milliseconds hashes the same.

Hostile answers stay cheap and bounded: only the first ``MAX_BODY_CHARS`` of a consulta body
(``MAX_PAGE_CHARS`` of a rendered page) are read, and a JSON body longer than that is
``unexpected_page``; nesting depth never raises ``RecursionError`` and the HTML reader is linear
in the number of tags; every place and novedad field is cut to ``MAX_FIELD_CHARS`` and every
``detail`` to ``EXCERPT_CHARS``; ``Retry-After`` is a finite number of seconds in
``[0, MAX_RETRY_AFTER_SECONDS]`` (or None).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from functools import partial
from html import unescape
from html.parser import HTMLParser
from typing import Any

from census.cedula import SEPARATORS, scrub
from census.limits import MAX_RETRY_AFTER_SECONDS, clamp_seconds
from census.outcomes import Outcome
from census.scraper import wordings
from census.scraper.base import SNAPSHOT_HTML_CHARS, LookupResult, Novedad, Place

#: Characters of page or body text kept in ``detail``.
EXCERPT_CHARS = 500
#: Characters of a consulta response body that are read; a longer JSON body is not an answer.
MAX_BODY_CHARS = 256 * 1024
#: Characters of a rendered page that are read (a page carries inline styles and scripts).
MAX_PAGE_CHARS = 1024 * 1024
#: Characters kept of each place and novedad field (the database columns are shorter still).
MAX_FIELD_CHARS = 200
#: Most digits of a kept ``coddivipol`` (``CedulaInfo.coddivipol``); a longer one is dropped.
MAX_CODE_DIGITS = 20
#: Longest ``meta["signature"]`` (the snapshot table's column).
SIGNATURE_CHARS = 80
#: The only field names a signature may name.
SIGNATURE_FIELDS = frozenset(
    {
        "ok",
        "encontrado",
        "error",
        "data",
        "novedad",
        "mensaje",
        "descripcion",
        "resolucion",
        "fecha_novedad",
        "fechanovedad",
        "fecha",
        "nom_depto",
        "nom_mun",
        "nom_puesto",
        "direccion",
        "mesa",
        "resultado",
    }
)
#: Longest ``Retry-After`` value read at all (an HTTP date is 29 characters).
_MAX_RETRY_AFTER_CHARS = 64
#: Characters of the ``Content-Type`` header that are read.
_MAX_CONTENT_TYPE_CHARS = 200
#: Characters of a media type kept in a signature.
_MEDIA_TYPE_CHARS = 40

_DELAY_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
_CAPTCHA_ERROR = re.compile(r"captcha|token|expir", re.IGNORECASE)
#: The backend's own downstream call failed ("Curl error: Operation timed out after 15008
#: milliseconds ..."): transient, retried as a connection error, never a site change.
_UPSTREAM_ERROR = re.compile(r"curl error|timed out|time-?out", re.IGNORECASE)
_F5_PHRASE = re.compile(r"the requested url was rejected", re.IGNORECASE)
_SUPPORT_ID = re.compile(r"support\s+id\s*(?:is)?\s*:?\s*(\d{6,})", re.IGNORECASE)
#: A number in an error text (``15008``, ``31.234.567``, ``1 012 345 678``): one ``0`` in its
#: hash. One separator of ``SEPARATORS`` between two digits, as ``scrub`` reads an echo.
_NUMBER = re.compile(r"\d+(?:[" + re.escape(SEPARATORS) + r"]\d+)*")
#: What a media type in a signature may keep; runs of 3+ digits are squeezed to ``0``.
_MEDIA_TYPE_JUNK = re.compile(r"[^a-z0-9./+-]+")
_DIGIT_RUN = re.compile(r"[0-9]{3,}")
_CODE = re.compile(rf"[0-9]{{1,{MAX_CODE_DIGITS}}}")
_JSON_MEDIA_TYPES = frozenset({"application/json", "text/json"})
#: The place fields of a found answer's ``data``, in ``Place`` order.
_PLACE_KEYS = ("nom_depto", "nom_mun", "nom_puesto", "direccion", "mesa")
_F5_CLASSES = frozenset({"blocked", "authenticate"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript"})
#: Something that looks like a tag, for the unparsed tail (no ``<`` inside: linear).
_TAG_LIKE = re.compile(r"<[^<>]*>")
#: Longest tail ``HTMLParser.close`` is left to finish (its cost grows with the square).
_MAX_UNPARSED_TAIL = 4096

_Meta = dict[str, str | int | float | None]


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
    answer (``unexpected_page``, or ``blocked`` with a 403). Only a 2xx answer is read as the
    site's answer, except that a captcha rejection is one whatever its status (403 included).
    """
    meta: _Meta = {"http_status": status}
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
    markup = body.lstrip()[:1] == "<"
    page = _read_html(body) if markup or "html" in content_type.lower() else None
    if page is not None and page.is_f5_block:
        return _blocked_page(page, meta, cedula)
    text = page.text if page is not None else body
    if status >= 500:
        return LookupResult(
            outcome=Outcome.CONNECTION_ERROR,
            detail=_excerpt(f"HTTP {status}: {text}", cedula),
            meta=meta,
        )
    size = f" (body over {MAX_BODY_CHARS} characters, not read further)" if oversized else ""
    detail = f"HTTP {status} {content_type or 'no content type'}{size}: {text}"
    if not 200 <= status < 300:
        answer = None if oversized else _decode(body)[0]
        if answer is not None:
            result = parse_answer(answer, cedula)
            if result.outcome is Outcome.CAPTCHA_FAILED:
                return _with_meta(result, meta)
        if status == 403:
            return LookupResult(outcome=Outcome.BLOCKED, detail="HTTP 403 Forbidden", meta=meta)
        code = str(status) if 100 <= status <= 599 else "invalid"
        return _unexpected(_signature("consulta", "status", code), detail, cedula, meta)
    media_type = _media_type(content_type)
    if markup:
        signature = _signature("consulta", "html_page")
    elif not _is_json_media_type(media_type):
        signature = _signature("consulta", "content_type", _signature_media_type(media_type))
    elif oversized:
        signature = _signature("consulta", "oversized")
    else:
        answer, check = _decode(body)
        if answer is not None:
            return _with_meta(parse_answer(answer, cedula), meta)
        signature = _signature("consulta", check)
    return _unexpected(signature, detail, cedula, meta)


def parse_answer(answer: Mapping[str, Any], cedula: str) -> LookupResult:
    """Classify the decoded JSON answer of the consulta endpoint (keys in any case).

    Anything but a known shape is ``unexpected_page`` with its signature (module docstring).
    """
    try:
        return _classify_answer(answer, cedula)
    except RecursionError:
        return _unexpected(_signature("answer", "too_deep"), "answer nested too deeply to read")


def parse_rendered_page(html: str, cedula: str) -> LookupResult:
    """Classify the page as rendered after the submit (fallback when no JSON was captured).

    Only the first ``MAX_PAGE_CHARS`` of ``html`` are read.
    """
    page = _read_html(html)
    if page.is_f5_block:
        return _blocked_page(page, {}, cedula)
    unknown_table = False
    for table in page.tables:
        header = [_fold(cell) for cell in table[0]] if table else []
        rows = [row for row in table[1:] if any(row)]
        if not rows or len(header) < 2:
            continue
        values = dict(zip(header, rows[0], strict=False))
        if "novedad" in values:
            return _novelty(
                "page",
                [_text(values.get("novedad"))],
                values.get("resolucion"),
                values.get("fecha novedad"),
                partial(_described, "rendered novelty table", " | ".join(rows[0])),
                cedula,
            )
        if "departamento" in values and "municipio" in values:
            place = _place(values)
            if not _has_place(place):
                return _unexpected(
                    _signature("page", "found_without_place"),
                    f"rendered found table without a place: {' | '.join(rows[0])}",
                    cedula,
                )
            return LookupResult(outcome=Outcome.FOUND, place=place)
        unknown_table = unknown_table or "nuip" in header
    if unknown_table:
        return _unexpected(
            _signature("page", "unknown_table"), f"rendered page: {page.text}", cedula
        )
    # Only the not-found message is read from the page's free text: other words there may be
    # the page's own (help, notices), and a tableless answer in other words is new.
    reading = wordings.read(page.text, among=(wordings.NOT_IN_CENSUS,))
    if reading is not None:
        return LookupResult(outcome=Outcome.NOT_FOUND, detail=_excerpt(_sentence(reading), cedula))
    if len(html) > MAX_PAGE_CHARS:
        signature = _signature("page", "oversized")
    else:
        signature = _signature("page", "missing_element", "resultado")
    return _unexpected(signature, f"rendered page: {page.text}", cedula)


def unexpected_signature(result: LookupResult) -> str:
    """The shape signature of an ``unexpected_page`` result; "" for any other outcome."""
    if result.outcome is not Outcome.UNEXPECTED_PAGE:
        return ""
    return str(result.meta.get("signature") or "")[:SIGNATURE_CHARS]


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


#: The first line of a kept page that ``scrub_page`` could not scrub as markup.
VISIBLE_TEXT_ONLY = "[census: visible text only: the page's markup hid the cédula]"


def scrub_page(html: str, cedula: str, *, limit: int = SNAPSHOT_HTML_CHARS) -> str:
    """A page's HTML fit to keep: scrubbed, then cut to ``limit``, then checked.

    When the kept HTML still shows an echo of the cédula, in its source with character
    references decoded or in its visible text (digits written as references, ``&#49;&#50;``,
    or more markup between two digits than ``scrub`` takes), only the visible text is kept,
    scrubbed, under ``VISIBLE_TEXT_ONLY``. Linear in the page's size: the text is read with
    the same bounded reader as every page the scraper parses.
    """
    kept = scrub(html, cedula)[:limit]
    decoded, text = unescape(kept), _read_html(kept).text
    if scrub(decoded, cedula) == decoded and scrub(text, cedula) == text:
        return kept
    return f"{VISIBLE_TEXT_ONLY}\n{scrub(text, cedula)}"


def _classify_answer(answer: Mapping[str, Any], cedula: str) -> LookupResult:
    if not isinstance(answer, Mapping):
        return _unexpected(
            _signature("answer", "not_object"), f"answer is not an object: {_dump(answer)}", cedula
        )
    top, duplicate = _lower_keys(answer)
    if duplicate:
        return _unexpected(
            _signature("answer", "duplicate_key", duplicate),
            f"answer with {duplicate} twice (in another case): {_dump(answer)}",
            cedula,
        )
    if "ok" not in top:
        return _unexpected(
            _signature("answer", "missing_field", "ok"),
            f"answer without ok: {_dump(answer)}",
            cedula,
        )
    if not isinstance(top["ok"], bool):
        return _unexpected(
            _signature("answer", "bad_type", "ok"),
            f"answer whose ok is not a boolean: {_dump(answer)}",
            cedula,
        )
    if not top["ok"]:
        return _error_answer(top, cedula)
    raw_data = top.get("data")
    data: dict[str, Any] = {}
    if isinstance(raw_data, Mapping):
        data, duplicate = _lower_keys(raw_data)
        if duplicate:
            return _unexpected(
                _signature("answer", "duplicate_key", duplicate),
                f"answer data with {duplicate} twice (in another case): {_dump(answer)}",
                cedula,
            )
    elif raw_data is not None and not (isinstance(raw_data, list) and not raw_data):
        # null, absent or [] (how PHP writes an empty array) is no data; anything else is new.
        return _unexpected(
            _signature("answer", "bad_type", "data"),
            f"answer whose data is not an object: {_dump(answer)}",
            cedula,
        )
    if "encontrado" in top and not isinstance(top["encontrado"], bool):
        return _unexpected(
            _signature("answer", "bad_type", "encontrado"),
            f"answer whose encontrado is not a boolean: {_dump(answer)}",
            cedula,
        )
    if top.get("novedad") or data.get("novedad"):
        return _novelty(
            "answer",
            _novelty_texts(top, data),
            data.get("resolucion") or top.get("resolucion"),
            _first(data, top, ("fecha_novedad", "fechanovedad", "fecha")),
            partial(_described, "novelty answer", answer),
            cedula,
        )
    if "encontrado" not in top:
        return _unexpected(
            _signature("answer", "missing_field", "encontrado"),
            f"answer without encontrado: {_dump(answer)}",
            cedula,
        )
    if not top["encontrado"]:
        return _not_found(top, data, answer, cedula)
    for key in _PLACE_KEYS:
        value = data.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            return _unexpected(
                _signature("answer", "bad_type", key),
                f"found answer whose {key} is not a text: {_dump(answer)}",
                cedula,
            )
    place = _place(data, API_PLACE_KEYS)
    if not _has_place(place):
        return _unexpected(
            _signature("answer", "found_without_place"),
            f"found answer without a place: {_dump(answer)}",
            cedula,
        )
    return LookupResult(
        outcome=Outcome.FOUND,
        place=replace(place, coddivipol=_code(data.get("coddivipol"), cedula)),
    )


def _not_found(
    top: Mapping[str, Any], data: Mapping[str, Any], answer: Mapping[str, Any], cedula: str
) -> LookupResult:
    """``encontrado: false`` without a novelty: its message says what it is, in known words."""
    texts = [text for text in (_text(top.get(key)) for key in ("mensaje", "descripcion")) if text]
    if not texts:
        return _unexpected(
            _signature("answer", "missing_field", "mensaje"),
            f"not-found answer without a message: {_dump(answer)}",
            cedula,
        )
    for text in texts:
        reading = wordings.read(text)
        if reading is None:
            continue
        wording = reading.wording
        if wording.outcome is Outcome.NOT_FOUND and wording.reason is None:
            return LookupResult(outcome=Outcome.NOT_FOUND, detail=_excerpt(text, cedula))
        fecha = _first(data, top, ("fecha_novedad", "fechanovedad", "fecha"))
        resolucion = data.get("resolucion") or top.get("resolucion")
        return _worded(wording, text, resolucion, fecha, cedula)
    return _unexpected(
        _signature("answer", "unknown_message", _error_hash(texts[0])),
        f"not-found answer in no known wording: {_dump(answer)}",
        cedula,
    )


def _novelty(
    where: str,
    texts: list[str],
    resolucion: Any,
    fecha: Any,
    shown: Callable[[], str],
    cedula: str,
) -> LookupResult:
    """A novelty (truthy ``novedad``, or the page's NOVEDAD table): the first of ``texts``
    in a known wording says what it is; none is an answer in no known shape (``shown``
    writes the answer for its detail)."""
    texts = [text for text in texts if text]
    if not texts:
        return _unexpected(_signature(where, "novedad_without_text"), shown(), cedula)
    for text in texts:
        reading = wordings.read(text)
        if reading is not None:
            return _worded(reading.wording, text, resolucion, fecha, cedula)
    return _unexpected(
        _signature(where, "unknown_novedad", _error_hash(texts[0])),
        f"{shown()} (no known wording)",
        cedula,
    )


def _described(what: str, answer: Any) -> str:
    """``what: answer`` for a detail, the answer written back as JSON unless a text."""
    return f"{what}: {answer if isinstance(answer, str) else _dump(answer)}"


def _worded(
    wording: wordings.Wording, text: str, resolucion: Any, fecha: Any, cedula: str
) -> LookupResult:
    """The answer a known wording gives, keeping the text as the site wrote it."""
    novedad = Novedad(
        novedad=_field(text, cedula),
        resolucion=_field(resolucion, cedula),
        fecha_novedad=_field(fecha, cedula),
    )
    return LookupResult(
        outcome=wording.outcome,
        novedad=novedad,
        reason=wording.reason,
        detail=_excerpt(text, cedula) if wording.outcome is Outcome.NOT_FOUND else "",
    )


def _novelty_texts(top: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """The texts a novelty answer may word itself in, the most specific first."""
    flags = [value for value in (data.get("novedad"), top.get("novedad")) if isinstance(value, str)]
    others = [
        top.get("descripcion"),
        data.get("descripcion"),
        top.get("mensaje"),
        data.get("mensaje"),
    ]
    return [_text(value) for value in (*flags, *others)]


def _first(data: Mapping[str, Any], top: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The first truthy value under ``keys``, in ``data`` before the top level."""
    for source in (data, top):
        for key in keys:
            if source.get(key):
                return source.get(key)
    return None


def _code(value: Any, cedula: str) -> str:
    """A ``coddivipol`` fit to keep: ASCII digits, at most ``MAX_CODE_DIGITS``, never holding
    the cédula; anything else is ""."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    text = _text(value)
    if not _CODE.fullmatch(text) or (cedula and cedula in text):
        return ""
    return text


def _error_answer(top: Mapping[str, Any], cedula: str) -> LookupResult:
    """An ``ok: false`` answer: a captcha rejection, or an error nobody knows."""
    error = top.get("error") or top.get("mensaje")
    if not error:
        return _unexpected(
            _signature("answer", "missing_field", "error"),
            f"site error: ok is false, no error text: {_dump(dict(top))}",
            cedula,
        )
    if not isinstance(error, str):
        return _unexpected(
            _signature("answer", "bad_type", "error"),
            f"site error that is not a text: {_dump(error)}",
            cedula,
        )
    if _CAPTCHA_ERROR.search(error):
        return LookupResult(
            outcome=Outcome.CAPTCHA_FAILED, detail=_excerpt(f"site error: {error}", cedula)
        )
    if _UPSTREAM_ERROR.search(error):
        return LookupResult(
            outcome=Outcome.CONNECTION_ERROR,
            detail=_excerpt(f"site error (its upstream call failed): {error}", cedula),
        )
    return _unexpected(
        _signature("answer", "unknown_error", _error_hash(error)), f"site error: {error}", cedula
    )


def _error_hash(text: str) -> str:
    """6 hex digits naming an error text whatever numbers it carries (see the docstring)."""
    normal = _squash(_NUMBER.sub("0", text)).lower()
    return hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()[:6]


def _signature(where: str, check: str, detail: str = "") -> str:
    return ":".join(part for part in (where, check, detail) if part).lower()[:SIGNATURE_CHARS]


def _unexpected(
    signature: str, detail: str, cedula: str = "", meta: _Meta | None = None
) -> LookupResult:
    return LookupResult(
        outcome=Outcome.UNEXPECTED_PAGE,
        detail=_excerpt(detail, cedula),
        meta={**(meta or {}), "signature": signature},
    )


def _media_type(content_type: str) -> str:
    """``Application/JSON; charset=utf-8`` gives ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_media_type(media_type: str) -> bool:
    return media_type in _JSON_MEDIA_TYPES or media_type.endswith("+json")


def _signature_media_type(media_type: str) -> str:
    """A media type fit for a signature: ``[a-z0-9./+-]`` only, no long number, bounded."""
    clean = _DIGIT_RUN.sub("0", _MEDIA_TYPE_JUNK.sub("", media_type.lower()))
    return clean[:_MEDIA_TYPE_CHARS] or "none"


#: The JSON API's key for each ``Place`` field; the rendered table's headers are the
#: field names themselves.
API_PLACE_KEYS: Mapping[str, str] = {
    "departamento": "nom_depto",
    "municipio": "nom_mun",
    "puesto": "nom_puesto",
    "direccion": "direccion",
    "mesa": "mesa",
}


def _place(values: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> Place:
    """A ``Place`` from an answer's ``values``, each field read under ``keys``' name for it."""
    names = keys or {}
    return Place(**{name: _field(values.get(names.get(name, name))) for name in API_PLACE_KEYS})


def _has_place(place: Place) -> bool:
    return bool(place.departamento or place.municipio or place.puesto)


def _blocked_page(page: _Page, meta: _Meta, cedula: str) -> LookupResult:
    heading = page.f5_headings[0] if page.f5_headings else "The requested URL was rejected"
    support_id = page.support_id
    meta = {**meta, "support_id": support_id} if support_id else meta
    suffix = f" (support ID {support_id})" if support_id else ""
    detail = _excerpt(f"F5 block page: {heading}{suffix}", cedula)
    return LookupResult(outcome=Outcome.BLOCKED, detail=detail, meta=meta)


def _decode(body: str) -> tuple[Mapping[str, Any] | None, str]:
    """The body's JSON object, or None and the check that failed."""
    if not body.strip():
        return None, "empty_body"
    try:
        value = json.loads(body)
    except RecursionError:  # [[[[... nested deeper than the decoder goes
        return None, "too_deep"
    except (TypeError, ValueError):
        return None, "not_json"
    return (value, "") if isinstance(value, Mapping) else (None, "not_object")


def _lower_keys(mapping: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Keys lower-cased, and the first field that came twice (``ok`` and ``OK``) or ""."""
    lowered: dict[str, Any] = {}
    duplicate = ""
    for key, value in mapping.items():
        name = str(key).lower()
        if name in lowered and not duplicate and name in SIGNATURE_FIELDS:
            duplicate = name
        lowered[name] = value
    return lowered, duplicate


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _with_meta(result: LookupResult, meta: _Meta) -> LookupResult:
    return replace(result, meta={**result.meta, **meta})


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


def _sentence(reading: wordings.Reading) -> str:
    """The sentence around the words read (at most 200 characters either side)."""
    text = reading.text
    start = max(text.rfind(".", 0, reading.start) + 1, reading.start - 200)
    end = text.find(".", reading.end)
    return text[start : end + 1 if end != -1 else reading.end + 200].strip()


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
