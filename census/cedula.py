"""Cédula numbers: normalisation, validation and masking. Pure functions."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[.\s\-]")
_VALID = re.compile(r"\d{3,10}")


class InvalidCedula(ValueError):
    """The value is not a cédula number (3 to 10 digits once separators are removed)."""


def normalize(value: object) -> str:
    """Return the digits of ``value`` with dots, spaces and dashes removed, or raise."""
    text = _SEPARATORS.sub("", str(value if value is not None else ""))
    if not _VALID.fullmatch(text):
        raise InvalidCedula(
            f"a cédula has 3 to 10 digits once dots, spaces and dashes are removed; "
            f"got {len(text)} characters ({mask(text)})"
        )
    return text


def mask(value: object) -> str:
    """Keep the last 3 characters: ``1234567890`` becomes ``*******890``."""
    text = str(value if value is not None else "")
    if len(text) <= 3:
        return "*" * len(text)
    return "*" * (len(text) - 3) + text[-3:]


def scrub(text: str, cedula: str | None) -> str:
    """Replace every occurrence of ``cedula`` (also with separators) in ``text`` by its mask."""
    if not cedula or not text:
        return text
    digits = re.sub(r"\D", "", cedula)
    if not digits:
        return text
    # Also catch the number written with thousands dots or spaces (1.234.567.890).
    pattern = r"[.\s\-]?".join(re.escape(d) for d in digits)
    return re.sub(rf"(?<!\d){pattern}(?!\d)", mask(digits), text)
