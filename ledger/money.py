"""Money is Decimal with 5 decimal places (16 digits), never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

PLACES = Decimal("0.00001")
ZERO = Decimal("0.00000")


def money(amount: Decimal | int | str) -> Decimal:
    """Quantize an amount to the ledger's 5 decimal places."""
    return Decimal(amount).quantize(PLACES, rounding=ROUND_HALF_UP)


def format_money(amount: Decimal) -> str:
    """Render money the way upstream's DecimalField(16, 5) does: '300.00000'."""
    return f"{money(amount):.5f}"
