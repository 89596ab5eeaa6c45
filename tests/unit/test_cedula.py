"""census.cedula: one canonical form, hostile input, masking and scrubbing."""

from __future__ import annotations

import pytest

from census.cedula import (
    MASK_MAX_CHARS,
    MAX_INPUT_CHARS,
    InvalidCedula,
    canonical,
    is_canonical,
    mask,
    normalize,
    scrub,
)

CEDULA = "1234567890"
#: Longest message ``InvalidCedula`` may carry, whatever the input.
MESSAGE_MAX_CHARS = 300


def _id(value: object) -> str:
    """A short test id, even for a 100,000-character string or a 5,000-digit int."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} chars)"


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("1234567890", "1234567890"),
        ("123", "123"),
        ("1.234.567.890", "1234567890"),
        ("1,234,567,890", "1234567890"),
        ("1 234 567 890", "1234567890"),
        ("1-234-567-890", "1234567890"),
        (" 52 123-456 ", "52123456"),
        ("\t52\t123\t456\t", "52123456"),
        ("52\u00a0123\u00a0456", "52123456"),  # no-break space
        ("52\u202f123\u202f456", "52123456"),  # narrow no-break space
        ("52\u2009123\u2009456", "52123456"),  # thin space
        ("52\u2010123\u2011456", "52123456"),  # hyphen, non-breaking hyphen
        ("5\u2012123\u2013456\u2014789", "5123456789"),  # figure dash, en and em dashes
        ("1\u2015234", "1234"),  # horizontal bar
        ("1.2.3", "123"),
        ("12345678\r\n", "12345678"),  # a pasted line
        (1234567890, "1234567890"),
        (123, "123"),
    ],
)
def test_normalize_strips_separators(raw: object, digits: str) -> None:
    """Dots, commas, spaces, tabs, no-break and thin spaces, hyphens and dashes go."""
    assert normalize(raw) == digits
    assert canonical(raw) == digits


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("0012345678", "12345678"),
        ("0123", "123"),
        ("00.012.345.678", "12345678"),
        ("0001234567890", "1234567890"),  # 13 characters, 10 digits once the zeros go
        ("1000", "1000"),  # zeros inside or at the end stay
        (1000, "1000"),
    ],
)
def test_normalize_strips_leading_zeros(raw: object, digits: str) -> None:
    """The canonical form has no leading zero: padded imports give the same cédula."""
    assert normalize(raw) == digits


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("12", "got 2 digits"),
        ("0012", "got 2 digits"),  # 2 digits once the zeros go
        ("12345678901", "got 11 digits"),
        ("10 00 00 000 01", "got 11 digits"),
        ("0", "only zeros"),
        ("0000000000", "only zeros"),
        ("", "no digits"),
        ("   ", "no digits"),
        (" . - , ", "no digits"),
        ("12a45", "only the digits 0-9"),
        ("ana.perez", "only the digits 0-9"),
        ("１２３４５６７８", "only the digits 0-9"),  # fullwidth digits
        ("١٢٣٤٥٦٧٨", "only the digits 0-9"),  # Arabic-Indic digits
        ("۱۲۳۴۵۶۷۸", "only the digits 0-9"),  # extended Arabic-Indic digits
        ("12345\u00b2", "only the digits 0-9"),  # superscript two: isdigit() says yes
        ("123_456", "only the digits 0-9"),
        ("+573001234567", "only the digits 0-9"),
        ("1234\n5678", "only the digits 0-9"),  # a line break inside is not a separator
        ("'; DROP TABLE users; --", "only the digits 0-9"),
        ("<script>alert(1)</script>", "only the digits 0-9"),
        ("1234567890\x00", "only the digits 0-9"),
        (None, "got nothing"),
        (b"1234567890", "got bytes"),
        (1.0e9, "got float"),
        (1234567.0, "got float"),
        (True, "got bool"),
        ([1, 2, 3], "got list"),
        (-1234567, "negative"),
        (12345678901, "more than 10 digits"),
        (10**5000, "more than 10 digits"),
        ("1" * (MAX_INPUT_CHARS + 1), "too long"),
        ("9" * 100_000, "too long"),
    ],
    ids=_id,
)
def test_normalize_rejects_with_a_clear_bounded_message(raw: object, reason: str) -> None:
    """Every refusal says why, mentions 3 to 10 digits and stays short."""
    with pytest.raises(InvalidCedula, match="3 to 10 digits") as info:
        normalize(raw)
    message = str(info.value)
    assert reason in message
    assert len(message) <= MESSAGE_MAX_CHARS
    assert canonical(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "12345678901",
        "12a45678",
        "'; DROP TABLE users; --",
        "<script>alert(1)</script>",
        "１２３４５６７８",
        "9" * 100_000,
        "x" * 64,
    ],
    ids=_id,
)
def test_error_messages_show_at_most_the_last_three_characters(raw: str) -> None:
    """No run of 4 or more characters of the value appears in the message."""
    with pytest.raises(InvalidCedula) as info:
        normalize(raw)
    message = str(info.value)
    for start in range(len(raw[:200]) - 3):
        assert raw[start : start + 4] not in message


def test_invalid_cedula_is_a_value_error() -> None:
    """Callers that catch ValueError keep working."""
    assert issubclass(InvalidCedula, ValueError)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("1234567890", "*******890"),
        ("123", "***"),
        ("12", "**"),
        ("", ""),
        (None, ""),
        (1234567890, "*******890"),
        ("1.234.567.890", "**********890"),
        ("x" * 100_000, "*" * (MASK_MAX_CHARS - 3) + "xxx"),
        (10**5000 + 42, "*" * (MASK_MAX_CHARS - 3) + "042"),
    ],
    ids=_id,
)
def test_mask_keeps_last_three(value: object, masked: str) -> None:
    """Only the last three characters survive, and huge values give a short mask."""
    assert mask(value) == masked


@pytest.mark.parametrize(
    ("text", "cedula", "expected"),
    [
        ("cc 1234567890.", "1234567890", "cc *******890."),
        ("cc 1.234.567.890", "1234567890", "cc *******890"),
        ("cc 1,234,567,890", "1234567890", "cc *******890"),
        ("cc 1 234 567 890", "1234567890", "cc *******890"),
        ("cc 1-234-567-890", "1234567890", "cc *******890"),
        ("cc 1\u00a0234\u00a0567\u00a0890", "1234567890", "cc *******890"),
        ("cc 1\u2013234\u2013567\u2013890", "1234567890", "cc *******890"),
        ("cc 0012345678", "12345678", "cc *****678"),  # zeros added by the site
        ("cc 00.012.345.678", "12345678", "cc *****678"),
        ("cc 12345678", "0012345678", "cc *****678"),  # stored with zeros
        ("cc 12.345.678", "00.012.345.678", "cc *****678"),
        ("cc 12345678", 12345678, "cc *****678"),  # an int cédula
        ("1234567890", "1234567890", "*******890"),  # the whole text
        ("(1234567890)", "1234567890", "(*******890)"),
        ("a1234567890b", "1234567890", "a*******890b"),  # letters are not digits
        ("1234567890 y 1.234.567.890", "1234567890", "*******890 y *******890"),
        ("otro 91234567890", "1234567890", "otro 91234567890"),  # longer number
        ("otro 12345678901", "1234567890", "otro 12345678901"),
        ("otro 912345678", "12345678", "otro 912345678"),
        ("otro 9001234567890", "1234567890", "otro 9001234567890"),  # zeros after a 9
        ("nada aquí", "1234567890", "nada aquí"),
        ("", "1234567890", ""),
        ("cc 1234567890", None, "cc 1234567890"),
        ("cc 1234567890", "", "cc 1234567890"),
        ("cc 12", "12", "cc 12"),  # fewer than 3 digits: nothing worth masking
        ("cc 12345678901", "12345678901", "cc ********901"),  # invalid, still masked
        ("cc 1234567890", "9" * 100_000, "cc 1234567890"),  # absurd value: no pattern
        ("cc １２３４５６７８９０", "1234567890", "cc １２３４５６７８９０"),  # not ASCII digits
    ],
    ids=_id,
)
def test_scrub_masks_every_echo(text: str, cedula: object, expected: str) -> None:
    """Plain, separated and zero-padded echoes are masked; longer numbers are left alone."""
    assert scrub(text, cedula) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Character references, as page.content() writes U+00A0 and as markup may write any.
        ("<td>1&nbsp;234&nbsp;567&nbsp;890</td>", "<td>*******890</td>"),
        ("<td>1&#160;234&#160;567&#160;890</td>", "<td>*******890</td>"),
        ("<td>1&#xA0;234&#xa0;567&#XA0;890</td>", "<td>*******890</td>"),
        ("<td>1&#46;234&#46;567&#46;890</td>", "<td>*******890</td>"),
        ("<td>1&period;234&period;567&period;890</td>", "<td>*******890</td>"),
        ("<td>1&nbsp;&nbsp;234 &#46; 567 890</td>", "<td>*******890</td>"),
        # Tags and comments between digits.
        ("<b>1.234</b>.567.890", "<b>*******890"),
        (
            "<span>1</span><span>234</span><span>567</span><span>890</span>",
            "<span>*******890</span>",
        ),
        ('1<span class="sep">.</span>234.567<!-- x -->.890', "*******890"),
        ("<td>\n  1.234\n</td><td>567.890</td>", "<td>\n  *******890</td>"),
        # Spaces and dots in any mix; line breaks; a JSON body's \u escapes.
        ("1. 234. 567. 890", "*******890"),
        ("1 .234 . 567 .890", "*******890"),
        ("1.\r\n234.\n567.890", "*******890"),
        ('{"n": "1\\u00a0234\\u00a0567\\u00a0890"}', '{"n": "*******890"}'),
        # Still not an echo: a longer number, or digits too far apart.
        ("<b>9</b>1234567890", "<b>9</b>*******890"),
        ("91&nbsp;234&nbsp;567&nbsp;890", "91&nbsp;234&nbsp;567&nbsp;890"),
        ("1" + "." * 9 + "234567890", "1" + "." * 9 + "234567890"),
    ],
    ids=_id,
)
def test_scrub_masks_echoes_whatever_the_markup(text: str, expected: str) -> None:
    """Digits apart by references, tags, line breaks, escapes or any mix of spaces and dots
    (up to ``GAP_PIECES`` pieces) are an echo; the text around them is kept."""
    assert scrub(text, "1234567890") == expected


def test_scrub_keeps_longer_numbers_around_the_cedula() -> None:
    """A number that merely contains the cédula is not touched; the cédula itself is."""
    text = "La cédula 1234567890 (1.234.567.890) no se encuentra; 91234567890 is another"
    cleaned = scrub(text, "1234567890")
    assert "1234567890" not in cleaned.replace("91234567890", "")
    assert "1.234.567.890" not in cleaned
    assert cleaned.count("*******890") == 2
    assert "91234567890" in cleaned


@pytest.mark.parametrize(
    ("text", "cedula", "tail"),
    [
        ("0 " * 500_000, "12345678", "0 "),
        ("0 " * 500_000 + "12345678", "12345678", "*****678"),
        ("1" * 1_000_000, "111", "1"),
        ("1 " * 300_000, "111", "*** "),  # 300,000 ones: 100,000 echoes
        ("9" + "0" * 1_000_000 + "123", "123", "0123"),
        ("1.2." * 250_000, "1234567890", "1.2."),
    ],
    ids=["spaced-zeros", "spaced-zeros-then-cedula", "ones", "spaced-ones", "zeros", "dots"],
)
def test_scrub_handles_a_megabyte_of_hostile_text(text: str, cedula: str, tail: str) -> None:
    """Digit floods of 1 MB are scrubbed (no catastrophic backtracking) with the right end."""
    assert scrub(text, cedula).endswith(tail)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345678", True),
        ("012345678", False),
        ("12.345.678", False),
        (12345678, False),
        ("", False),
    ],
)
def test_is_canonical_accepts_only_what_normalize_returns(value: object, expected: bool) -> None:
    """The guard a callee uses instead of normalising a second time."""
    assert is_canonical(value) is expected
