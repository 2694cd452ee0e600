"""Low-balance thresholds: amounts, or percentages of the value granted so far.

A threshold is kept as written ("50%", "100.5", "0") so a notification can say which one
was crossed; its amount is resolved against the granted value at the moment it is checked.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ledger.errors import RuleViolation
from ledger.money import ZERO, money

FIELD = "low_balance_thresholds"
MAX_THRESHOLDS = 10


def parse(raw: str) -> tuple[Decimal, bool]:
    """(number, is_percentage) of one threshold; RuleViolation when it is not one."""
    text = raw.strip()
    percentage = text.endswith("%")
    try:
        number = Decimal(text.removesuffix("%").strip())
    except InvalidOperation:
        raise RuleViolation(f"{raw!r} is not an amount or a percentage such as \"10%\".",
                            FIELD) from None
    if not number.is_finite() or number < 0:
        raise RuleViolation(f"{raw!r} must be 0 or more.", FIELD)
    if percentage and number > 100:
        raise RuleViolation(f"{raw!r} must be at most 100%.", FIELD)
    if not percentage and number != money(number):
        raise RuleViolation(f"{raw!r} has more than 5 decimal places.", FIELD)
    if number >= Decimal("1e11"):
        raise RuleViolation(f"{raw!r} is too large.", FIELD)
    return number, percentage


def normalised(thresholds: list[str]) -> list[str]:
    """The thresholds as stored: checked, written canonically, repeats once, highest first."""
    if len(thresholds) > MAX_THRESHOLDS:
        raise RuleViolation(f"Ensure this field has no more than {MAX_THRESHOLDS} elements.",
                            FIELD)
    found: dict[tuple[Decimal, bool], str] = {}
    for raw in thresholds:
        number, percentage = parse(raw)
        text = f"{number.normalize():f}" + ("%" if percentage else "")
        found[(number, percentage)] = text
    return [found[key] for key in sorted(found, key=lambda k: (k[1], k[0]), reverse=True)]


def amount(threshold: str, granted: Decimal) -> Decimal:
    """The balance below which the threshold is crossed."""
    number, percentage = parse(threshold)
    return money(granted * number / 100) if percentage else money(number)


def is_zero(threshold: str) -> bool:
    """A threshold of 0 (or 0 %) is the exhaustion of the credit, reported as such."""
    return parse(threshold)[0] == ZERO
