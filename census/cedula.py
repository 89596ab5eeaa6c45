"""Cédula numbers: normalisation, validation, masking and scrubbing. Pure functions.

One canonical form
    A cédula is stored, sent to the census site and compared as its canonical digits: ASCII
    digits ``0``-``9`` only, **without leading zeros**, 3 to 10 of them. ``normalize`` turns
    what a person or an import wrote into that form, or raises ``InvalidCedula``:

    - separators are removed: dots, commas, ASCII spaces and tabs, the no-break spaces U+00A0
      and U+202F, the thin space U+2009, hyphen-minus and the Unicode hyphens and dashes
      U+2010-U+2015 (``1.234.567.890``, ``1,234,567,890``, ``1 234 567 890``, ``1-234-567-890``);
      surrounding ASCII whitespace (a pasted line's ``\\r\\n``) is trimmed;
    - every other character is refused, including digits of other scripts (fullwidth ``１２３``,
      Arabic-Indic ``١٢٣``) that Python's ``\\d`` and ``str.isdigit`` accept;
    - leading zeros are stripped (``0012345678`` is ``12345678``): the Registraduría issues no
      cédula starting with 0, and spreadsheets and imports pad numbers with zeros. 3 to 10
      digits must remain; nothing but zeros is not a cédula;
    - only ``str`` and ``int`` values are read (a non-negative ``int`` is its decimal digits);
      ``None``, ``bytes``, ``float`` (``1.0e9`` prints as ``1000000000.0``), ``bool`` and
      anything else are refused, as is text longer than ``MAX_INPUT_CHARS``, before any work.

Nothing here echoes a cédula: error messages are short and show at most the last 3 characters
of the value (``mask``), and ``scrub`` masks the number wherever a text repeats it.
"""

from __future__ import annotations

import re

from census.exceptions import CensusError

#: Characters removed between digits: ``.`` ``,`` space, tab, U+00A0, U+202F, U+2009, ``-``
#: and U+2010-U+2015. Written out (no ``\s``) so that nothing else slips through.
SEPARATORS = ".,\t \u00a0\u202f\u2009-\u2010\u2011\u2012\u2013\u2014\u2015"
#: Longest text ``normalize`` reads; anything longer is refused without being looked at.
MAX_INPUT_CHARS = 64
#: Fewest and most digits of a canonical cédula (leading zeros stripped).
MIN_DIGITS = 3
MAX_DIGITS = 10
#: Longest string ``mask`` returns (the stars are cut, the last 3 characters kept).
MASK_MAX_CHARS = 32

#: What ``scrub`` takes for the gap between two digits of an echo, as a page, a JSON body or
#: a log writes it: up to this many pieces, each a separator (``SEPARATORS`` or a line break),
#: an HTML character reference (``&nbsp;``, ``&#160;``, ``&#x2E;``), a tag or comment
#: (``<b>``, ``</span>``, ``<!-- -->``), or a JSON/JavaScript ``\uXXXX`` escape. Any mix:
#: ``1. 234. 567. 890``, ``1&nbsp;234``, ``<b>1.234</b>.567.890``.
GAP_PIECES = 8
#: Longest tag (between ``<`` and ``>``) a gap may hold.
GAP_TAG_CHARS = 200

_DROP_SEPARATORS = str.maketrans(dict.fromkeys(SEPARATORS))
_ASCII_DIGITS = re.compile(r"[0-9]+")
_SEP_CLASS = "[" + re.escape(SEPARATORS) + "]"
# Each alternative starts with its own character (a separator, "&", "<", "\\"): at most one
# can match at a position, and each matches one way, so the scan stays linear.
_GAP = (
    "(?:"
    + "|".join(
        [
            "[" + re.escape(SEPARATORS + "\r\n\f\v") + "]",
            r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});",
            f"<[^<>]{{0,{GAP_TAG_CHARS}}}>",
            r"\\u[0-9a-fA-F]{4}",
        ]
    )
    + f"){{0,{GAP_PIECES}}}"
)
_ASCII_WHITESPACE = " \t\r\n\f\v"
_MAX_INT = 10**MAX_DIGITS - 1


class InvalidCedula(CensusError, ValueError):
    """The value is not a cédula: not 3 to 10 digits 0-9 once separators and leading zeros go.

    The message is short (bounded whatever the input) and shows at most the value's last 3
    characters, masked the way ``mask`` does.
    """


def normalize(value: object) -> str:
    """Return the canonical cédula in ``value`` (3 to 10 ASCII digits, no leading zero), or raise.

    ``value`` is a ``str`` (separators from ``SEPARATORS`` are removed, surrounding ASCII
    whitespace trimmed, leading zeros stripped: ``" 0.012.345.678 "`` gives ``"12345678"``) or
    a non-negative ``int``. Anything else, any other character (letters, non-ASCII digits such
    as ``１２３``), text longer than ``MAX_INPUT_CHARS``, all zeros, or fewer than 3 / more than
    10 digits once the zeros are stripped raises ``InvalidCedula``.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        kind = "nothing" if value is None else type(value).__name__
        raise InvalidCedula(f"a cédula is 3 to 10 digits, given as text or an integer; got {kind}")
    if isinstance(value, int):
        if not 0 <= value <= _MAX_INT:
            raise InvalidCedula(
                "a cédula is 3 to 10 digits; got "
                + ("a negative number" if value < 0 else "a number with more than 10 digits")
            )
        text = str(value)
    else:
        if len(value) > MAX_INPUT_CHARS:
            raise InvalidCedula(
                f"a cédula is 3 to 10 digits; got {len(value)} characters, too long to be one"
            )
        text = value
    digits = text.strip(_ASCII_WHITESPACE).translate(_DROP_SEPARATORS)
    if not digits:
        raise InvalidCedula("a cédula is 3 to 10 digits; got no digits")
    if not _ASCII_DIGITS.fullmatch(digits):
        raise InvalidCedula(
            "a cédula is 3 to 10 digits and only the digits 0-9 are accepted (dots, commas, "
            f"spaces and dashes between them are ignored); got {mask(text)}"
        )
    canonical_digits = digits.lstrip("0")
    if not canonical_digits:
        raise InvalidCedula("a cédula is 3 to 10 digits; got only zeros")
    if not MIN_DIGITS <= len(canonical_digits) <= MAX_DIGITS:
        raise InvalidCedula(
            f"a cédula is 3 to 10 digits (leading zeros aside); got {len(canonical_digits)} "
            f"digits ({mask(text)})"
        )
    return canonical_digits


def canonical(value: object) -> str | None:
    """``normalize(value)``, or None when ``value`` is not a cédula. Never raises."""
    try:
        return normalize(value)
    except InvalidCedula:
        return None


def is_canonical(value: object) -> bool:
    """Whether ``value`` is already ``normalize``'s result (text it would return unchanged):
    for a callee that trusts its caller to have normalised, as a guard, not a second pass."""
    return isinstance(value, str) and canonical(value) == value


def mask(value: object) -> str:
    """Keep the last 3 characters: ``1234567890`` becomes ``*******890``.

    Values of 3 characters or fewer are all stars. At most ``MASK_MAX_CHARS`` characters come
    back, however long the value: the stars are cut, the last 3 characters kept.
    """
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**MASK_MAX_CHARS:
        # str() of a huge int is slow (and refused past 4300 digits); only the tail is needed.
        return "*" * (MASK_MAX_CHARS - 3) + f"{abs(value) % 1000:03d}"
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:  # a hostile __str__: show nothing rather than fail
            return "***"
    if len(text) <= 3:
        return "*" * len(text)
    return "*" * min(len(text) - 3, MASK_MAX_CHARS - 3) + text[-3:]


def scrub(text: str, cedula: object) -> str:
    """Replace every echo of ``cedula`` in ``text`` by the mask of its canonical digits.

    An echo is the canonical digits written as a site, a browser or a log may write them:
    plain (``1234567890``), with a gap between any two digits (``1.234.567.890``,
    ``1,234,567,890``, ``1 234 567 890``, ``1-234-567-890``, ``1. 234. 567. 890``,
    ``1&nbsp;234&nbsp;567&nbsp;890``, ``1&#46;234``, ``<b>1.234</b>.567.890``: see
    ``GAP_PIECES``), and with or without leading zeros (``0012345678`` for ``12345678``, and
    ``12345678`` when the stored value is ``0012345678``). A longer run of ASCII digits that
    merely contains the number is left alone (``91234567890`` is not ``1234567890``). For
    HTML whose markup may hide the number in other ways (digits written as character
    references), ``census.scraper.parser.scrub_page`` checks the result.

    ``cedula`` is read like ``normalize`` reads it. When it is not a valid cédula, its ASCII
    digits (leading zeros stripped) are masked instead if there are at least 3 of them and the
    value is at most ``MAX_INPUT_CHARS`` long; otherwise ``text`` comes back unchanged.

    Linear in ``len(text)``: one regular-expression scan whose repetitions are bounded and
    unambiguous (``_GAP``), and a backward walk over leading zeros that never revisits a
    character.
    """
    if not text or not isinstance(text, str):
        return text
    digits = _scrub_digits(cedula)
    if digits is None:
        return text
    core = re.compile("(?<![1-9])" + _GAP.join(digits) + "(?![0-9])")
    replacement = mask(digits)
    pieces: list[str] = []
    done = 0  # text[:done] is already in pieces
    pos = 0
    while (found := core.search(text, pos)) is not None:
        start = _echo_start(text, found.start(), floor=done)
        if start is None:
            pos = found.start() + 1
            continue
        pieces.append(text[done:start])
        pieces.append(replacement)
        done = pos = found.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _scrub_digits(cedula: object) -> str | None:
    """The digits ``scrub`` looks for: canonical, or a best effort for an invalid value."""
    digits = canonical(cedula)
    if digits is not None:
        return digits
    if not isinstance(cedula, str) or len(cedula) > MAX_INPUT_CHARS:
        return None
    loose = "".join(_ASCII_DIGITS.findall(cedula)).lstrip("0")
    return loose if len(loose) >= MIN_DIGITS else None


def _echo_start(text: str, core_start: int, *, floor: int) -> int | None:
    """Where the echo whose significant digits start at ``core_start`` begins, or None.

    Walks back over leading zeros (each optionally followed by one separator) and returns the
    earliest position not preceded by an ASCII digit; None when every candidate is preceded by
    one (the digits belong to a longer number). Never walks below ``floor``.
    """
    start = core_start if core_start == 0 or not _is_digit(text[core_start - 1]) else None
    i = core_start
    while i > floor:
        if text[i - 1] == "0":
            i -= 1
        elif i - 2 >= floor and text[i - 1] in SEPARATORS and text[i - 2] == "0":
            i -= 2
        else:
            break
        if i == 0 or not _is_digit(text[i - 1]):
            start = i
    return start


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"
