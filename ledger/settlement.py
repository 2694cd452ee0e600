"""What a month close computes: floors, linear expectations, expiry (reference §4.2–4.6).

Settlement of period P runs as of the 1st of the month after P, never "today", so that
closing, re-opening and closing again give the same numbers.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from ledger.money import ZERO, money
from ledger.periods import Period
from ledger.terms import Terms

HUNDRED = Decimal(100)


def minimal_consumption(terms: Terms, today: date) -> Decimal:
    """The floor: (100 − grace)/100 × expected; full expected in the month the credit ends."""
    if not terms.apply_as_minimal_consumption:
        return Decimal(0)
    end = terms.end_date
    if end is not None and (end.year, end.month) == (today.year, today.month):
        return terms.expected_consumption
    return (HUNDRED - terms.grace_coefficient) / HUNDRED * terms.expected_consumption


def run_date(period: Period) -> date:
    """A period is settled as of the first day of the following month."""
    return period.next().first_day


def floor_shortfall(terms: Terms, period: Period, drawn: Decimal, balance: Decimal) -> Decimal:
    """The part of the floor not met by the month's draws, capped by the balance."""
    floor = money(max(ZERO, minimal_consumption(terms, run_date(period))))
    return max(ZERO, min(floor - drawn, balance))


def time_left_factor(end_date: date, today: date) -> Decimal:
    days_until_end = (end_date.replace(day=1) - today).days
    if days_until_end <= 0:
        return Decimal(1)
    return min(Decimal(1), Decimal(Period.of(today).days) / Decimal(days_until_end))


def linear_expected(terms: Terms, value: Decimal, consumed: Decimal, period: Period) -> Decimal:
    """Next month's expectation: the remaining value spread over the remaining months."""
    assert terms.end_date is not None
    factor = time_left_factor(terms.end_date, run_date(period))
    carried = max(ZERO, terms.expected_consumption - consumed)
    return money(carried * (1 - factor) + value * factor)


def expires_at_close(terms: Terms, period: Period) -> bool:
    """End date on or before the next month's first day: nothing more to cover."""
    return terms.end_date is not None and terms.end_date <= run_date(period)


def is_linear(terms: Terms, period: Period) -> bool:
    return (
        terms.minimal_consumption_logic == "linear"
        and terms.end_date is not None
        and not expires_at_close(terms, period)
    )
