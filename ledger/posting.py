"""Consumption and month settlement: the commands that move money month by month."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from uuid import UUID

from ledger import drawing, settlement
from ledger.consumption import CALENDAR_ID, BillingCalendar, ConsumptionItem, consumption_id
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.directory import Customer, Project
from ledger.errors import NotFound, PeriodClosed
from ledger.periods import Period
from ledger.store import LedgerBase, Unit


@dataclass(frozen=True)
class ConsumptionInput:
    item_id: str
    project_id: UUID
    offering_id: UUID | None
    amount: Decimal
    period: Period


@dataclass(frozen=True)
class ConsumptionResult:
    item_id: str
    project_id: UUID
    amount: Decimal
    drawn_from_project_credit: Decimal
    drawn_from_customer_credit: Decimal
    uncovered: Decimal
    replayed: bool


@dataclass(frozen=True)
class CloseResult:
    period: Period
    already_closed: bool
    customers_settled: int


class Posting(LedgerBase):
    """Posting consumption items, reversing them, and closing or re-opening periods."""

    def find_consumption(self, item_id: str) -> ConsumptionItem | None:
        try:
            return self.get(consumption_id(item_id), ConsumptionItem)
        except NotFound:
            return None

    def calendar(self) -> BillingCalendar:
        try:
            return self.get(CALENDAR_ID, BillingCalendar)
        except NotFound:
            return BillingCalendar()

    def post_consumption(self, items: list[ConsumptionInput],
                         actor: str) -> list[ConsumptionResult]:
        """Apply a batch atomically, cheapest first; a known item id replays its result."""

        def command(unit: Unit) -> list[ConsumptionResult]:
            calendar = self.calendar()
            results: dict[str, ConsumptionResult] = {}
            for item in sorted(items, key=lambda i: i.amount):
                known = self.find_consumption(item.item_id)
                if known is not None:
                    results[item.item_id] = _result(known, replayed=True)
                    continue
                recorded = self._apply_item(unit, calendar, item, actor)
                results[item.item_id] = _result(unit.add(recorded), replayed=False)
            return [results[item.item_id] for item in items]

        return self.retrying(command)

    def _apply_item(self, unit: Unit, calendar: BillingCalendar, item: ConsumptionInput,
                    actor: str) -> ConsumptionItem:
        if calendar.is_closed(item.period):
            raise PeriodClosed(f"Billing period {item.period} is closed.", "period")
        project = unit.get(item.project_id, Project)
        project.check_active()
        customer = unit.get(project.customer_id, Customer)
        cc = unit.get(customer.credit_id, CustomerCredit) if customer.credit_id else None
        if cc is not None and cc.is_settled(item.period):
            raise PeriodClosed(f"Billing period {item.period} is closed.", "period")
        pc = unit.get(project.credit_id, ProjectCredit) if project.credit_id else None
        split = drawing.split_cost(item.amount, item.period, item.offering_id, cc, pc)
        drawn = split.from_project_credit + split.from_customer_credit
        if pc is not None and split.from_project_credit:
            pc.draw(split.from_project_credit, item.period, item.item_id, project.id, actor)
        if cc is not None and drawn:
            cc.draw(drawn, item.period, item.item_id, project.id, actor)
            if pc is not None:
                cc.sync_allocation(pc, actor)
        return ConsumptionItem(
            item_id=item.item_id, project_id=project.id, customer_id=customer.id,
            offering_id=item.offering_id, amount=item.amount, period=str(item.period),
            project_credit_id=pc.id if pc is not None and split.from_project_credit else None,
            customer_credit_id=cc.id if cc is not None and drawn else None,
            drawn_from_project_credit=split.from_project_credit,
            drawn_from_customer_credit=split.from_customer_credit,
            uncovered=split.uncovered, actor=actor)

    def reverse_consumption(self, item_id: str, actor: str) -> None:
        """Give an item's draws back while its period is open."""

        def command(unit: Unit) -> None:
            item = unit.get(consumption_id(item_id), ConsumptionItem)
            period = Period.parse(item.period)
            if self.calendar().is_closed(period):
                raise PeriodClosed(f"Billing period {period} is closed.", "period")
            item.reverse(actor)
            cc = self.live(unit, item.customer_credit_id, CustomerCredit)
            pc = self.live(unit, item.project_credit_id, ProjectCredit)
            if cc is not None and cc.is_settled(period):
                raise PeriodClosed(f"Billing period {period} is closed.", "period")
            if pc is not None:
                pc.reverse_draw(item.drawn_from_project_credit, period, item_id, actor)
            if cc is not None:
                cc.reverse_draw(item.drawn, period, item_id, actor)
                if pc is not None:
                    cc.sync_allocation(pc, actor)

        self.retrying(command)

    # --- settlement ----------------------------------------------------------------------

    def close_period(self, period: Period, actor: str, customer_credit_ids: Iterable[UUID],
                     progress: Callable[[int], None] = lambda n: None) -> CloseResult:
        """Settle every organisation credit for the period (each atomically), then close it."""
        if self.calendar().is_closed(period):
            return CloseResult(period, already_closed=True, customers_settled=0)
        settled = 0
        for done, credit_id in enumerate(customer_credit_ids, start=1):
            if self.retrying(partial(self._settle, credit_id=credit_id, period=period,
                                     actor=actor)):
                settled += 1
            progress(done)

        def close(unit: Unit) -> None:
            unit.add(self.calendar()).close(period, actor)

        self.retrying(close)
        return CloseResult(period, already_closed=False, customers_settled=settled)

    def _settle(self, unit: Unit, credit_id: UUID, period: Period, actor: str) -> bool:
        cc = self.live(unit, credit_id, CustomerCredit)
        if cc is None or cc.is_settled(period):
            return False
        pcs = [unit.get(UUID(key), ProjectCredit) for key in cc.allocations]
        org_floor = floor_due(cc, period)
        cc.charge_floor(org_floor, period, actor)
        floors = {pc.id: floor_due(pc, period) for pc in pcs}
        for pc in pcs:
            pc.charge_floor(floors[pc.id], period, actor)
        for credit, floor in [(cc, org_floor), *((pc, floors[pc.id]) for pc in pcs)]:
            if settlement.is_linear(credit.terms, period):
                consumed = credit.drawn_in(str(period)) + floor
                expected = settlement.linear_expected(credit.terms, credit.value, consumed, period)
                credit.recalculate_expected(expected, period, actor)
        for credit in [cc, *pcs]:
            if settlement.expires_at_close(credit.terms, period):
                credit.expire(period, actor)
        for pc in pcs:
            cc.sync_allocation(pc, actor)
        cc.mark_settled(period, actor)
        return True

    def reopen_period(self, period: Period, actor: str, customer_credit_ids: Iterable[UUID],
                      progress: Callable[[int], None] = lambda n: None) -> int:
        """Reverse the period's settlement with new events; nothing is deleted."""
        self.calendar().check_reopenable(period)
        reopened = 0
        for done, credit_id in enumerate(customer_credit_ids, start=1):
            if self.retrying(partial(self._unsettle, credit_id=credit_id, period=period,
                                     actor=actor)):
                reopened += 1
            progress(done)

        def reopen(unit: Unit) -> None:
            unit.add(self.calendar()).reopen(period, actor)

        self.retrying(reopen)
        return reopened

    def _unsettle(self, unit: Unit, credit_id: UUID, period: Period, actor: str) -> bool:
        cc = self.live(unit, credit_id, CustomerCredit)
        if cc is None or not cc.is_settled(period):
            return False
        for key in cc.allocations:
            pc = unit.get(UUID(key), ProjectCredit)
            pc.reverse_settlement(period, actor)
            cc.sync_allocation(pc, actor)
        cc.reverse_settlement(period, actor)
        cc.mark_reopened(period, actor)
        return True


def floor_due(credit: Credit, period: Period) -> Decimal:
    """The floor shortfall a credit pays for the period (0 when it does not cover it)."""
    if not credit.covers(period):
        return Decimal(0)
    return settlement.floor_shortfall(
        credit.terms, period, credit.drawn_in(str(period)), credit.value
    )


def _result(item: ConsumptionItem, replayed: bool) -> ConsumptionResult:
    return ConsumptionResult(
        item_id=item.item_id, project_id=item.project_id, amount=item.amount,
        drawn_from_project_credit=item.drawn_from_project_credit,
        drawn_from_customer_credit=item.drawn_from_customer_credit,
        uncovered=item.uncovered, replayed=replayed)
