"""Consumption items and the billing calendar.

A consumption item's id is the caller's key: its aggregate id is derived from it, so
posting the same key twice (even racing) can record it only once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import Conflict
from ledger.periods import Period

CALENDAR_ID = uuid5(NAMESPACE_URL, "/credit-ledger/billing-calendar")


def consumption_id(item_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/credit-ledger/consumptions/{item_id}")


class ConsumptionItem(Aggregate):
    """One posted cost item and how it was covered."""

    Recorded: ClassVar[type[Aggregate.Event]]
    Reversed: ClassVar[type[Aggregate.Event]]
    CoverageChanged: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(item_id: str) -> UUID:
        return consumption_id(item_id)

    @event("Recorded")
    def __init__(
        self,
        item_id: str,
        project_id: UUID,
        customer_id: UUID,
        offering_id: UUID | None,
        amount: Decimal,
        period: str,
        project_credit_id: UUID | None,
        customer_credit_id: UUID | None,
        drawn_from_project_credit: Decimal,
        drawn_from_customer_credit: Decimal,
        uncovered: Decimal,
        actor: str,
    ) -> None:
        self.item_id = item_id
        self.project_id = project_id
        self.customer_id = customer_id
        self.offering_id = offering_id
        self.amount = amount
        self.period = period
        self.project_credit_id = project_credit_id
        self.customer_credit_id = customer_credit_id
        self.drawn_from_project_credit = drawn_from_project_credit
        self.drawn_from_customer_credit = drawn_from_customer_credit
        self.uncovered = uncovered
        self.reversed = False

    @property
    def drawn(self) -> Decimal:
        return self.drawn_from_project_credit + self.drawn_from_customer_credit

    def change_coverage(self, project_credit_id: UUID | None, customer_credit_id: UUID | None,
                        drawn_from_project_credit: Decimal, drawn_from_customer_credit: Decimal,
                        actor: str) -> None:
        """Staff cleared or re-applied the item's period: it is now covered like this."""
        coverage = (project_credit_id, customer_credit_id, drawn_from_project_credit,
                    drawn_from_customer_credit)
        if coverage != (self.project_credit_id, self.customer_credit_id,
                        self.drawn_from_project_credit, self.drawn_from_customer_credit):
            self._coverage_changed(
                item_id=self.item_id, project_credit_id=project_credit_id,
                customer_credit_id=customer_credit_id,
                drawn_from_project_credit=drawn_from_project_credit,
                drawn_from_customer_credit=drawn_from_customer_credit,
                uncovered=self.amount - drawn_from_project_credit - drawn_from_customer_credit,
                actor=actor)

    @event("CoverageChanged")
    def _coverage_changed(self, item_id: str, project_credit_id: UUID | None,
                          customer_credit_id: UUID | None, drawn_from_project_credit: Decimal,
                          drawn_from_customer_credit: Decimal, uncovered: Decimal,
                          actor: str) -> None:
        self.project_credit_id = project_credit_id
        self.customer_credit_id = customer_credit_id
        self.drawn_from_project_credit = drawn_from_project_credit
        self.drawn_from_customer_credit = drawn_from_customer_credit
        self.uncovered = uncovered

    def reverse(self, actor: str) -> None:
        if self.reversed:
            raise Conflict(f"Consumption item {self.item_id} is already reversed.")
        self._reversed(item_id=self.item_id, actor=actor)

    @event("Reversed")
    def _reversed(self, item_id: str, actor: str) -> None:
        self.reversed = True


class BillingCalendar(Aggregate):
    """Which billing periods are closed; one stream so close and reopen are ordered."""

    Started: ClassVar[type[Aggregate.Event]]
    PeriodClosed: ClassVar[type[Aggregate.Event]]
    PeriodReopened: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id() -> UUID:
        return CALENDAR_ID

    @event("Started")
    def __init__(self) -> None:
        self.closed: list[str] = []

    def is_closed(self, period: Period) -> bool:
        return str(period) in self.closed

    def close(self, period: Period, actor: str) -> None:
        if not self.is_closed(period):
            self._closed(period=str(period), actor=actor)

    @event("PeriodClosed")
    def _closed(self, period: str, actor: str) -> None:
        self.closed.append(period)

    def check_reopenable(self, period: Period) -> None:
        if not self.is_closed(period):
            raise Conflict(f"Billing period {period} is not closed.")
        latest = max(Period.parse(p) for p in self.closed)
        if period != latest:
            raise Conflict(
                f"Only the most recently closed period ({latest}) can be re-opened."
            )

    def reopen(self, period: Period, actor: str) -> None:
        self.check_reopenable(period)
        self._reopened(period=str(period), actor=actor)

    @event("PeriodReopened")
    def _reopened(self, period: str, actor: str) -> None:
        self.closed.remove(period)
