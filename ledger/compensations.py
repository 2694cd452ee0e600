"""Staff's clear and re-apply of an open period's draws (upstream's clear/apply_compensations).

Clearing gives back every draw of an organisation's items in one open billing period:
each credit records one DrawsRolledBack with a line per item, and each item records its
new coverage (nothing), so the items stay posted, uncovered. Re-applying clears, then
draws the same items again, cheapest first, under today's rules and balances (an item
left uncovered before a top-up is covered after it). Both are one atomic command per
organisation, retried on a concurrent change like every other command.

The caller names the items (the API reads them from the consumptions read model, caught
up first); the command checks that they account for everything the organisation credit
drew in the period, so a lagging read model cannot leave a draw behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger import drawing
from ledger.consumption import ConsumptionItem, consumption_id
from ledger.credits import CustomerCredit, DrawLine, ProjectCredit
from ledger.directory import Project
from ledger.errors import Conflict, PeriodClosed
from ledger.money import ZERO
from ledger.periods import Period
from ledger.posting import Posting
from ledger.store import Unit


class Compensations(Posting):
    """clear_compensations and apply_compensations for one organisation credit."""

    def clear_compensations(self, credit_id: UUID, period: Period, item_ids: Sequence[str],
                            actor: str) -> None:
        self.retrying(lambda unit: self._recompensate(unit, credit_id, period, item_ids,
                                                      actor, reapply=False))

    def apply_compensations(self, credit_id: UUID, period: Period, item_ids: Sequence[str],
                            actor: str) -> None:
        self.retrying(lambda unit: self._recompensate(unit, credit_id, period, item_ids,
                                                      actor, reapply=True))

    def _recompensate(self, unit: Unit, credit_id: UUID, period: Period,
                      item_ids: Sequence[str], actor: str, reapply: bool) -> None:
        cc = unit.get(credit_id, CustomerCredit)
        self.calendar().check_open(period)
        if cc.is_settled(period):
            raise PeriodClosed(f"Billing period {period} is closed.", "period")
        items = self._items(unit, cc, period, item_ids)
        self._clear(unit, cc, period, items, actor)
        if reapply:
            self._reapply(unit, cc, period, items, actor)

    def _items(self, unit: Unit, cc: CustomerCredit, period: Period,
               item_ids: Sequence[str]) -> list[ConsumptionItem]:
        """The organisation's live items of the period that this credit may cover.

        Items drawn from an earlier (deleted) organisation credit are left alone.
        """
        unit.prefetch({consumption_id(item_id): ConsumptionItem for item_id in item_ids})
        found = [unit.get(consumption_id(item_id), ConsumptionItem) for item_id in item_ids]
        items = [item for item in found
                 if item.customer_id == cc.customer_id and item.period == str(period)
                 and not item.reversed and item.customer_credit_id in (None, cc.id)]
        drawn = sum((item.drawn for item in items if item.customer_credit_id == cc.id), ZERO)
        if drawn != cc.drawn_in(str(period)):
            raise Conflict("Consumption is being posted for this organisation; please retry.")
        return items

    def _clear(self, unit: Unit, cc: CustomerCredit, period: Period,
               items: list[ConsumptionItem], actor: str) -> None:
        """Every credit gives its draws back in one event; every item is left uncovered."""
        project_lines: dict[UUID, list[DrawLine]] = {}
        org_lines: list[DrawLine] = []
        for item in items:
            if not item.drawn:
                continue
            pc = self.live(unit, item.project_credit_id, ProjectCredit)
            through = None
            if pc is not None and item.drawn_from_project_credit:
                cc.sync_allocation(pc, actor)
                through = pc.id
                project_lines.setdefault(pc.id, []).append(
                    DrawLine(item.item_id, item.project_id, item.drawn_from_project_credit))
            org_lines.append(DrawLine(item.item_id, item.project_id, item.drawn, through))
        for pc_id, lines in project_lines.items():
            unit.get(pc_id, ProjectCredit).roll_back_draws(period, lines, actor)
        cc.roll_back_draws(period, org_lines, actor)
        for item in items:
            item.change_coverage(None, None, ZERO, ZERO, actor)

    def _reapply(self, unit: Unit, cc: CustomerCredit, period: Period,
                 items: list[ConsumptionItem], actor: str) -> None:
        """Draw the items again, cheapest first, as posting would draw them today."""
        wanted: dict[UUID, type[Aggregate]] = {item.project_id: Project for item in items}
        unit.prefetch(wanted)
        tally = drawing.DrawTally()
        for item in sorted(items, key=lambda i: (i.amount, i.created_on, i.item_id)):
            project = unit.get(item.project_id, Project)
            pc = self.live(unit, project.credit_id, ProjectCredit)
            split = drawing.split_cost(item.amount, period, item.offering_id, cc, pc,
                                       tally.available, tally.earmarked)
            through = tally.add_split(split, period, item.item_id, project.id, cc, pc)
            drawn = split.from_project_credit + split.from_customer_credit
            item.change_coverage(through, cc.id if drawn else None, split.from_project_credit,
                                 split.from_customer_credit, actor)
        tally.record(actor)
