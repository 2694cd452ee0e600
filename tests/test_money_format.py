"""Money on the wire: five places, plain notation, whatever path an amount took.

`format_money` prints an amount already at five places as it is and quantizes any other;
the read models' Money column hands amounts back at five places from their stored units.
Both shortcuts must print exactly what quantizing every amount printed.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Dialect
from sqlalchemy.dialects import postgresql, sqlite

from ledger.money import format_money
from projections.tables import Money

FIVE_PLACES = Decimal("0.00001")
amounts = st.decimals(min_value=Decimal("-1e11"), max_value=Decimal("1e11"),
                      allow_nan=False, allow_infinity=False)
units = st.integers(min_value=-(10**16), max_value=10**16)


def reader(dialect: Dialect) -> Callable[[Any], Any]:
    process = Money().dialect_impl(dialect).result_processor(dialect, None)
    assert process is not None
    return process


def quantized(amount: Decimal) -> str:
    return str(amount.quantize(FIVE_PLACES, rounding=ROUND_HALF_UP))


@given(amounts)
def test_any_amount_prints_as_its_value_quantized_to_five_places(amount: Decimal) -> None:
    assert format_money(amount) == quantized(amount)


@given(st.decimals(min_value=-100000, max_value=100000, allow_nan=False, allow_infinity=False),
       st.integers(min_value=-12, max_value=6))
def test_the_same_amount_prints_alike_whatever_its_exponent(amount: Decimal, shift: int) -> None:
    scaled = amount.scaleb(shift)  # within upstream's 16 digits, 11 before the point
    assert format_money(scaled) == quantized(scaled)


def test_amounts_in_scientific_notation_print_plain() -> None:
    assert format_money(Decimal("1E+5")) == "100000.00000"
    assert format_money(Decimal("0E-8")) == "0.00000"
    assert format_money(Decimal("1.00000E+3")) == "1000.00000"
    assert format_money(Decimal("-0.000005")) == "-0.00001"  # half up, away from zero


@given(units)
def test_stored_units_read_back_as_the_amount_at_five_places(count: int) -> None:
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        amount = reader(dialect)(count)
        assert amount == Decimal(count) / 100000
        assert format_money(amount) == quantized(amount)
        assert Money().process_bind_param(amount, dialect) == count
    assert reader(sqlite.dialect())(None) is None
