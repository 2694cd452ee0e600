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
    earmarked: Callable[[CustomerCredit], Decimal] = lambda credit: credit.earmarked,
) -> Split:
    """Apply DESIGN §3: offering restriction, no fallback to the pool, never below zero.

    ``available`` is what is left of a credit's balance and ``earmarked`` what its
    project credits still hold; a batch passes its running figures so that each item
    sees the draws of the items before it. With ``protect_allocations`` a pool draw
    leaves the earmarked money for its projects.
    """
    cc = customer_credit if customer_credit and not customer_credit.deleted else None
    if cc is None or not cc.covers(period) or not cc.allows(offering_id):
        return Split(ZERO, ZERO, amount)
    if project_credit is not None and not project_credit.deleted:
        if not project_credit.covers(period):
            return Split(ZERO, ZERO, amount)
        drawn = max(ZERO, min(amount, available(project_credit), available(cc)))
        return Split(drawn, ZERO, amount - drawn)
    pool = available(cc) - (earmarked(cc) if cc.protect_allocations else ZERO)
    drawn = max(ZERO, min(amount, pool))
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

    def earmarked(self, credit: CustomerCredit) -> Decimal:
        """What the organisation's project credits still hold after the batch's draws."""
        return sum((max(ZERO, value - self.pending.get(UUID(key), ZERO))
                    for key, value in credit.allocations.items()), ZERO)

    def add(self, credit: Credit, period: Period, line: DrawLine) -> None:
        self.credits[credit.id] = credit
        self.pending[credit.id] = self.pending.get(credit.id, ZERO) + line.amount
        self.lines.setdefault((credit.id, period), []).append(line)

    def add_split(self, split: Split, period: Period, item_id: str, project_id: UUID,
                  customer_credit: CustomerCredit | None,
                  project_credit: ProjectCredit | None) -> UUID | None:
        """Tally an item's split; the project credit it was drawn through, if any."""
        drawn = split.from_project_credit + split.from_customer_credit
        through = project_credit.id if project_credit and split.from_project_credit else None
        if project_credit is not None and through is not None:
            self.add(project_credit, period,
                     DrawLine(item_id, project_id, split.from_project_credit))
        if customer_credit is not None and drawn:
            self.add(customer_credit, period, DrawLine(item_id, project_id, drawn, through))
        return through

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
