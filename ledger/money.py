"""Money is Decimal with 5 decimal places (16 digits), never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

PLACES = Decimal("0.00001")
ZERO = Decimal("0.00000")


def money(amount: Decimal | int | str) -> Decimal:
    """Quantize an amount to the ledger's 5 decimal places."""
    exact = amount if type(amount) is Decimal else Decimal(amount)
    return exact.quantize(PLACES, rounding=ROUND_HALF_UP)


def format_money(amount: Decimal) -> str:
    """Render money the way upstream's DecimalField(16, 5) does: '300.00000'.

    Five places quantized print in plain notation; str() is a quarter of the cost of a
    format spec, and a wide page formats several amounts per row (issue 18). An amount
    already at five places (every stored one) prints as it is: its plain form is the
    only one with a point before five last digits, and quantizing it again would change
    nothing at twice the cost."""
    text = str(amount)
    if text[-6:-5] == "." and "E" not in text:
        return text
    return str(money(amount))
