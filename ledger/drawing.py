"""Who pays for a consumption item: pure rules over the credits' current state."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from ledger.credits import CustomerCredit, ProjectCredit
from ledger.money import ZERO
from ledger.periods import Period


@dataclass(frozen=True)
class Split:
    """How an item's amount is covered; the three parts add up to the amount."""

    from_project_credit: Decimal
    from_customer_credit: Decimal
    uncovered: Decimal


def split_cost(
    amount: Decimal,
    period: Period,
    offering_id: UUID | None,
    customer_credit: CustomerCredit | None,
    project_credit: ProjectCredit | None,
) -> Split:
    """Apply DESIGN §3: offering restriction, no fallback to the pool, never below zero."""
    cc = customer_credit if customer_credit and not customer_credit.deleted else None
    if cc is None or not cc.covers(period) or not cc.allows(offering_id):
        return Split(ZERO, ZERO, amount)
    if project_credit is not None and not project_credit.deleted:
        if not project_credit.covers(period):
            return Split(ZERO, ZERO, amount)
        drawn = max(ZERO, min(amount, project_credit.value, cc.value))
        return Split(drawn, ZERO, amount - drawn)
    drawn = max(ZERO, min(amount, cc.value))
    return Split(ZERO, drawn, amount - drawn)
