"""Who pays for a consumption item: pure rules over the credits' current state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from ledger.credits import Credit, CustomerCredit, DrawLine, ProjectCredit
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
    available: Callable[[Credit], Decimal] = lambda credit: credit.value,
) -> Split:
    """Apply DESIGN §3: offering restriction, no fallback to the pool, never below zero.

    ``available`` is what is left of a credit's balance; a batch passes its running
    balances so that each item sees the draws of the items before it.
    """
    cc = customer_credit if customer_credit and not customer_credit.deleted else None
    if cc is None or not cc.covers(period) or not cc.allows(offering_id):
        return Split(ZERO, ZERO, amount)
    if project_credit is not None and not project_credit.deleted:
        if not project_credit.covers(period):
            return Split(ZERO, ZERO, amount)
        drawn = max(ZERO, min(amount, available(project_credit), available(cc)))
        return Split(drawn, ZERO, amount - drawn)
    drawn = max(ZERO, min(amount, available(cc)))
    return Split(ZERO, drawn, amount - drawn)


class DrawTally:
    """A batch's draws, decided item by item and recorded at the end, per credit and period.

    Each item's split is computed against the running balances (balance minus what the
    batch has already drawn), so cheapest-first and never-below-zero hold across the
    batch; ``record`` then has each credit check and record all its lines in one event
    per period.
    """

    def __init__(self) -> None:
        self.credits: dict[UUID, Credit] = {}
        self.pending: dict[UUID, Decimal] = {}
        self.lines: dict[tuple[UUID, Period], list[DrawLine]] = {}

    def available(self, credit: Credit) -> Decimal:
        return credit.value - self.pending.get(credit.id, ZERO)

    def add(self, credit: Credit, period: Period, line: DrawLine) -> None:
        self.credits[credit.id] = credit
        self.pending[credit.id] = self.pending.get(credit.id, ZERO) + line.amount
        self.lines.setdefault((credit.id, period), []).append(line)

    def record(self, actor: str) -> None:
        """Project credits first, then organisation credits, each period in order.

        Every organisation credit's mirror of a drawn project credit is brought in line
        with the project credit's balance before either draws, so the organisation's
        lines move the mirror exactly as the project credit moves.
        """
        for credit in self.credits.values():
            if isinstance(credit, CustomerCredit):
                for project_credit in self._drawn_through(credit):
                    credit.sync_allocation(project_credit, actor)
        ordered = sorted(self.lines.items(), key=lambda entry: (
            isinstance(self.credits[entry[0][0]], CustomerCredit), entry[0][1]))
        for (credit_id, period), lines in ordered:
            self.credits[credit_id].draw_items(period, lines, actor)

    def _drawn_through(self, customer_credit: CustomerCredit) -> list[ProjectCredit]:
        ids = {line.project_credit_id for (credit_id, _), lines in self.lines.items()
               if credit_id == customer_credit.id for line in lines}
        return [credit for credit in (self.credits[i] for i in ids if i is not None)
                if isinstance(credit, ProjectCredit)]
