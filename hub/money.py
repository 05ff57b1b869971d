"""Money at the edge: exact decimals in, integer minor units inside (CONTRACT §1).

An amount is a JSON number or decimal string with at most 2 decimal places, in
0.01..10000.00. It is held as integer minor units (pence) and written out as a
:class:`~decimal.Decimal` with exactly two places (``19.90``), which the JSON codec
renders as a number.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["MIN_MINOR", "MAX_MINOR", "to_minor", "from_minor", "AmountError"]

MIN_MINOR = 1
MAX_MINOR = 1_000_000
_CENT = Decimal("0.01")


class AmountError(ValueError):
    """The value is not an amount the hub accepts; ``str(err)`` says why."""


def to_minor(value: Decimal | str | int) -> int:
    """Convert an exact decimal amount to integer minor units.

    Raises:
        AmountError: not finite, more than 2 decimal places, or outside 0.01..10000.00.
    """
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise AmountError("must be a decimal number") from exc
    if not d.is_finite():
        raise AmountError("must be a finite number")
    # the range first: quantize() of a huge value would overflow the context precision
    if not (Decimal("0.01") <= d <= Decimal("10000.00")):
        raise AmountError("must be between 0.01 and 10000.00")
    cents = d.quantize(_CENT)
    if cents != d:
        raise AmountError("must have at most 2 decimal places")
    return int(cents * 100)


def from_minor(minor: int) -> Decimal:
    """Return ``minor`` pence as a Decimal with exactly two places (``1990`` → ``19.90``)."""
    return Decimal(minor).scaleb(-2)
