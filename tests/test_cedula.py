"""census.cedula: normalisation, masking and scrubbing."""

from __future__ import annotations

import pytest

from census.cedula import InvalidCedula, mask, normalize, scrub


@pytest.mark.parametrize(
    ("raw", "digits"),
    [("1.234.567.890", "1234567890"), (" 52 123-456 ", "52123456"), ("123", "123")],
)
def test_normalize_strips_separators(raw: str, digits: str) -> None:
    """Dots, spaces and dashes go; digits stay."""
    assert normalize(raw) == digits


@pytest.mark.parametrize("raw", ["12", "12345678901", "12a45", "", None, "1,234"])
def test_normalize_rejects_non_cedulas_without_echoing_them(raw: object) -> None:
    """Invalid input raises a clear error that does not repeat the value in full."""
    with pytest.raises(InvalidCedula, match="3 to 10 digits") as info:
        normalize(raw)
    if raw and len(str(raw)) > 3:
        assert str(raw) not in str(info.value)


def test_mask_keeps_last_three() -> None:
    """Only the last three digits survive."""
    assert mask("1234567890") == "*******890"
    assert mask("123") == "***"


def test_scrub_removes_plain_and_dotted_forms() -> None:
    """Both 1234567890 and 1.234.567.890 are masked inside longer text."""
    text = "La cédula 1234567890 (1.234.567.890) no se encuentra; 91234567890 is another"
    cleaned = scrub(text, "1234567890")
    assert "1234567890" not in cleaned.replace("91234567890", "")
    assert "1.234.567.890" not in cleaned
    assert "*******890" in cleaned
    assert "91234567890" in cleaned
