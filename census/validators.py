"""Sign-up forms and user models: one account per cédula, stored in its canonical form.

``census.cedula.normalize`` decides what a cédula is; these give its decision as Django
expects it at a form or a model field:

- ``CedulaValidator`` (``validate_cedula``): a field validator that refuses a non-cédula;
- ``normalize_cedula``: the canonical digits a form stores (``clean_<field>``), or the
  validator's error;
- ``cedula_taken``: whether some user's ``CENSUS_CEDULA_FIELD`` already holds the cédula,
  in whatever spelling it was stored (``CEDULA_TAKEN_MESSAGE`` is what to show then).

The error message is generic and translated: it shows nothing of the value (``normalize``'s
own text, with the value's last digits, is for logs and stored errors, and is English).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from census.cedula import SEPARATORS, InvalidCedula, canonical, normalize
from census.conf import settings

#: What a form shows for a value that is not a cédula (the rules of ``normalize``).
INVALID_CEDULA_MESSAGE = _(
    "Enter a valid cédula: the number alone, 3 to 10 digits 0-9 (dots, commas, spaces and "
    "dashes between them are ignored)."
)
#: The ``ValidationError`` code for a value that is not a cédula.
INVALID_CEDULA_CODE = "invalid_cedula"
#: What a form shows when ``cedula_taken`` says another account holds the cédula.
CEDULA_TAKEN_MESSAGE = _("An account with this cédula already exists.")
#: The ``ValidationError`` code for a cédula another account holds.
CEDULA_TAKEN_CODE = "cedula_taken"


@deconstructible(path="census.validators.CedulaValidator")
class CedulaValidator:
    """Refuses a value that ``census.cedula.normalize`` does not read as a cédula.

    For a username or cédula field, on a model (``validators=[CedulaValidator()]``, kept in
    migrations) or a form. It validates only: a form stores the canonical form with
    ``normalize_cedula``.
    """

    message = INVALID_CEDULA_MESSAGE
    code = INVALID_CEDULA_CODE

    def __init__(self, message: Any = None, code: str | None = None) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code

    def __call__(self, value: Any) -> None:
        try:
            normalize(value)
        except InvalidCedula:
            raise ValidationError(self.message, code=self.code) from None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CedulaValidator)
            and self.message == other.message
            and self.code == other.code
        )


#: The validator with its default message, for ``validators=[validate_cedula]``.
validate_cedula = CedulaValidator()


def normalize_cedula(value: Any) -> str:
    """The canonical cédula in ``value`` (``"1.023.456.789"`` gives ``"1023456789"``), or
    ``ValidationError`` with ``CedulaValidator``'s message and code."""
    try:
        return normalize(value)
    except InvalidCedula:
        raise ValidationError(INVALID_CEDULA_MESSAGE, code=INVALID_CEDULA_CODE) from None


# Classes of the characters ``normalize`` drops, written without escapes and with "-" last,
# so that every database's regular-expression dialect reads them alike: separators anywhere,
# ASCII whitespace around the value too, and leading zeros.
_SEPARATOR = "[" + SEPARATORS.replace("-", "") + "-]"
_EDGE = "[" + SEPARATORS.replace("-", "") + "\r\n\f\v-]"
_LEADING = "[0" + SEPARATORS.replace("-", "") + "-]"


def _spellings(digits: str) -> str:
    """A regular expression for the stored spellings of the canonical ``digits``
    (``0.001.023.456.789``, `` 1 023 456 789\\r\\n``), and a few that ``normalize`` refuses
    (a line break before a trailing dash, more than 64 characters): a caller confirms what
    it matches."""
    return f"^{_EDGE}*{_LEADING}*" + f"{_SEPARATOR}*".join(digits) + f"{_EDGE}*$"


def cedula_taken(value: Any, *, exclude_user: Any = None) -> bool:
    """Whether a user (other than ``exclude_user``) has this cédula in ``CENSUS_CEDULA_FIELD``,
    compared in canonical form: ``1.023.456.789``, ``1023456789`` and ``01023456789`` stored
    are all the same cédula. A non-cédula raises ``normalize_cedula``'s ``ValidationError``.

    First an exact query for the canonical form (the field's index, when it has one, as
    ``username`` does): all it costs when the cédula is taken and stored canonical. When that
    finds nothing, one more query matches every stored value against ``_spellings`` (no index
    serves it: it reads the whole user table, about 1 ms per thousand users on PostgreSQL),
    and what it finds is confirmed with ``normalize``, so that no other value counts.
    """
    digits = normalize_cedula(value)
    field = settings.cedula_field
    users = get_user_model()._default_manager.all()
    exclude_pk = getattr(exclude_user, "pk", None)
    if exclude_pk is not None:
        users = users.exclude(pk=exclude_pk)
    if users.filter(**{field: digits}).exists():
        return True
    candidates = users.filter(**{f"{field}__regex": _spellings(digits)})
    return any(
        canonical(stored) == digits
        for stored in candidates.values_list(field, flat=True).iterator()
    )
