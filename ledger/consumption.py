"""Consumption items and the billing calendar.

A consumption item's id is the caller's key: its aggregate id is derived from it, so
posting the same key twice (even racing) can record it only once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import Conflict, ItemIdTaken, PeriodClosed
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
        # what the first answer said, whatever compensations changed since: a replay repeats it
        self.first_figures = (drawn_from_project_credit, drawn_from_customer_credit, uncovered)

    def check_same(self, project_id: UUID, offering_id: UUID | None, amount: Decimal,
                   period: Period) -> None:
        """Posting the id again is a replay only with the same content."""
        if (project_id, offering_id, amount, str(period)) != (
                self.project_id, self.offering_id, self.amount, self.period):
            raise ItemIdTaken(f"Consumption item {self.item_id} is already recorded with "
                              "other content; post new usage under a new id.", self)

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
    """Which billing periods are closed; one stream so close and reopen are ordered.

    Closed months are a prefix of time: the first month that can be closed is the earliest
    month with any activity (the ledger's first event, or the earliest period anything was
    posted for, which the calendar records as ActivityExtended), and after it only the month
    right after the latest closed one. The rules are checked here, in the commands; the
    apply methods only record, so calendars with gaps from earlier releases still replay.
    """

    Started: ClassVar[type[Aggregate.Event]]
    PeriodClosed: ClassVar[type[Aggregate.Event]]
    PeriodReopened: ClassVar[type[Aggregate.Event]]
    ActivityExtended: ClassVar[type[Aggregate.Event]]
    CloseStarted: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id() -> UUID:
        return CALENDAR_ID

    @event("Started")
    def __init__(self) -> None:
        self.closed: list[str] = []
        self.earliest_posted: str | None = None
        self.closing: str | None = None  # a close begun (its organisations being settled)

    def is_closed(self, period: Period) -> bool:
        return str(period) in self.closed

    @property
    def latest_closed(self) -> Period | None:
        return max((Period.parse(p) for p in self.closed), default=None)

    def check_open(self, period: Period) -> None:
        """Nothing is posted, reversed or compensated at or before the latest closed month,
        nor at or before a month whose close has begun."""
        latest = self.latest_closed
        if latest is not None and period <= latest:
            raise PeriodClosed(f"Billing period {period} is closed.", "period")
        if self.closing is not None and period <= Period.parse(self.closing):
            raise PeriodClosed(f"Billing period {self.closing} is being closed.", "period")

    def knows_activity_from(self, period: Period) -> bool:
        """Whether the calendar already records activity this early (or earlier)."""
        return self.earliest_posted is not None and Period.parse(self.earliest_posted) <= period

    def extend_activity(self, period: Period, actor: str) -> None:
        """Something was posted for ``period``: the first closable month may move back."""
        if not self.knows_activity_from(period):
            self._activity_extended(period=str(period), actor=actor)

    @event("ActivityExtended")
    def _activity_extended(self, period: str, actor: str) -> None:
        self.earliest_posted = period

    def first_month(self, first_event: Period | None) -> Period | None:
        """The earliest month with activity: of the first event, or the earliest posted."""
        known = [Period.parse(self.earliest_posted)] if self.earliest_posted else []
        return min([*known, *([first_event] if first_event else [])], default=None)

    def next_to_close(self, first_event: Period | None) -> Period | None:
        if self.closing is not None:
            return Period.parse(self.closing)
        latest = self.latest_closed
        return latest.next() if latest is not None else self.first_month(first_event)

    def check_closable(self, period: Period, first_event: Period | None) -> None:
        """Only the next month in line closes (the latest closed one again is a no-op);
        refuse any other, naming the right one."""
        if period == self.latest_closed:
            return
        upcoming = self.next_to_close(first_event)
        if upcoming is None:
            raise Conflict("Nothing has been recorded yet: there is no month to close.",
                           "period")
        if self.latest_closed is None and period < upcoming:
            raise Conflict(f"Billing period {period} is before the ledger's first month "
                           f"with activity; the first month is {upcoming}.", "period")
        if period != upcoming:
            when = " yet" if period > upcoming else ""
            raise Conflict(f"Billing period {period} cannot be closed{when}: months close in "
                           f"order, and the next month to close is {upcoming}.", "period")

    def start_close(self, period: Period, first_event: Period | None, actor: str) -> None:
        """Before any organisation is settled: from here the month takes no postings and
        the first month cannot move back (ActivityExtended conflicts with this event)."""
        self.check_closable(period, first_event)
        if period != self.latest_closed and self.closing != str(period):
            self._close_started(period=str(period), actor=actor)

    @event("CloseStarted")
    def _close_started(self, period: str, actor: str) -> None:
        self.closing = period

    def close(self, period: Period, first_event: Period | None, actor: str) -> None:
        self.check_closable(period, first_event)
        if period != self.latest_closed:
            self._closed(period=str(period), actor=actor)

    @event("PeriodClosed")
    def _closed(self, period: str, actor: str) -> None:
        self.closed.append(period)
        self.closing = None

    def irregularities(self) -> list[str]:
        """Gaps and out-of-order closes left by earlier releases (they keep working)."""
        found = []
        if self.closed != sorted(self.closed):
            found.append(f"billing periods were closed out of order: {', '.join(self.closed)}")
        closed = sorted(Period.parse(p) for p in self.closed)
        gaps = [str(month) for earlier, later in zip(closed, closed[1:], strict=False)
                for month in _months(earlier.next(), later)]
        if gaps:
            found.append(f"billing periods {', '.join(gaps)} are open between closed ones; "
                         "they can no longer be closed or posted to")
        return found

    def check_reopenable(self, period: Period) -> None:
        if self.closing is not None:
            raise Conflict(f"The close of billing period {self.closing} has begun; close it "
                           "first.")
        if not self.is_closed(period):
            raise Conflict(f"Billing period {period} is not closed.")
        latest = self.latest_closed
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


def _months(first: Period, stop: Period) -> list[Period]:
    """``first`` up to, not including, ``stop``."""
    months = []
    while first < stop:
        months.append(first)
        first = first.next()
    return months
