"""How many months a credit's balance lasts at its recent pace of consumption.

The pace is what consumption drew from the credit in each of the last (at most three)
closed billing periods, averaged over those periods; a credit with no closed period, or
that drew nothing in them, has no runway (null).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from projections.tables import billing_periods, credit_months

MONTHS = 3


def last_closed_periods(conn: Connection, count: int = MONTHS) -> list[str]:
    found = conn.execute(select(billing_periods.c.period).where(billing_periods.c.closed)
                         .order_by(billing_periods.c.period.desc()).limit(count))
    return list(found.scalars())


def runways(conn: Connection, balances: Iterable[tuple[str, Decimal]],
            periods: list[str]) -> dict[str, float | None]:
    """Each credit's runway in months (2 places) over `periods`, by credit uuid."""
    balances = list(balances)
    drawn: dict[str, Decimal] = {}
    if periods and balances:
        rows = conn.execute(
            select(credit_months.c.credit_uuid, func.sum(credit_months.c.drawn))
            .where(credit_months.c.credit_uuid.in_([uuid for uuid, _ in balances]),
                   credit_months.c.period.in_(periods))
            .group_by(credit_months.c.credit_uuid))
        drawn = {uuid: Decimal(total or 0) for uuid, total in rows}
    return {uuid: runway(balance, drawn.get(uuid, Decimal(0)), len(periods))
            for uuid, balance in balances}


def runway(balance: Decimal, drawn: Decimal, months: int) -> float | None:
    """balance / (drawn / months); None when the average is 0 (or there are no months)."""
    if months == 0 or drawn <= 0:
        return None
    months_left = balance * months / drawn
    return float(months_left.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def with_runways(conn: Connection, views: list[dict[str, Any]], periods: list[str]) -> None:
    """Add `runway_months` to each credit view (one query for the page)."""
    found = runways(conn, [(view["row"].uuid, view["row"].value) for view in views], periods)
    for view in views:
        view["runway_months"] = found[view["row"].uuid]
