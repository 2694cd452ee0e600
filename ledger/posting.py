"""Consumption and month settlement: the commands that move money month by month."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from functools import partial
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from ledger import drawing, settlement
from ledger.consumption import CALENDAR_ID, BillingCalendar, ConsumptionItem, consumption_id
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.directory import Customer, Project
from ledger.errors import Conflict, ItemIdReversed, NotFound, PeriodClosed
from ledger.loading import load_many, peek
from ledger.periods import Period
from ledger.store import LedgerBase, Unit

KnownItems = Callable[[Sequence[str]], Collection[str]]


RECORDED_TOPIC = get_topic(ConsumptionItem.Recorded)
SETTLE_CHUNK = 250  # organisations settled per atomic save when a period closes
OrganisationStep = Callable[..., bool]  # (unit, credit_id, period, actor) -> changed?


@dataclass(frozen=True)
class ProjectLinks:
    """What the read models say a project leads to. Only a guess, loaded together with the
    project, so that a batch whose aggregates are not cached takes one round of loads, not
    three (project, then customer and project credit, then customer credit; issue 18);
    a wrong guess costs a wasted load, since the fresh states' links are followed anyway."""

    customer_id: UUID
    project_credit_id: UUID | None
    customer_credit_id: UUID | None

    def aggregates(self) -> dict[UUID, type[Aggregate]]:
        found: dict[UUID, type[Aggregate]] = {self.customer_id: Customer}
        if self.project_credit_id is not None:
            found[self.project_credit_id] = ProjectCredit
        if self.customer_credit_id is not None:
            found[self.customer_credit_id] = CustomerCredit
        return found


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

    _first_event_period: Period | None = None

    def find_consumption(self, item_id: str) -> ConsumptionItem | None:
        try:
            return self.get(consumption_id(item_id), ConsumptionItem)
        except NotFound:
            return None

    def find_consumptions(self, item_ids: Iterable[str]) -> dict[str, ConsumptionItem]:
        """The recorded items among ``item_ids``, loaded together (ledger.loading)."""
        wanted: dict[UUID, type[Aggregate]] = {
            consumption_id(item_id): ConsumptionItem for item_id in item_ids}
        found = load_many(self, wanted, cache_new=False).values()
        return {item.item_id: item for item in found if isinstance(item, ConsumptionItem)}

    def calendar(self) -> BillingCalendar:
        try:
            return self.get(CALENDAR_ID, BillingCalendar)
        except NotFound:
            return BillingCalendar()

    def first_event_period(self) -> Period | None:
        """The month of the ledger's first event (fixed once there is one)."""
        if self._first_event_period is None:
            first = self.recorder.select_notifications(start=0, limit=1,
                                                       inclusive_of_start=False)
            if first:
                event: Any = self.mapper.to_domain_event(first[0])
                self._first_event_period = Period.of(event.timestamp.astimezone(UTC).date())
        return self._first_event_period

    def stored_earliest_posted(self) -> Period | None:
        """The earliest period any stored item was posted for, read from the items' events:
        for calendars of earlier releases, which did not record it (read once per ledger,
        since the calendar records it from the next posting on)."""
        earliest: Period | None = None
        position = 0
        while page := self.recorder.select_notifications(
                start=position, limit=1000, topics=[RECORDED_TOPIC], inclusive_of_start=False):
            for notification in page:
                recorded: Any = self.mapper.to_domain_event(notification)
                period = Period.parse(recorded.period)
                earliest = period if earliest is None else min(earliest, period)
            position = page[-1].id
        return earliest

    def activity_outside(self, calendar: BillingCalendar) -> Period | None:
        """What the calendar's first-month rule needs from the store: the first event's
        month, and for a calendar that never recorded postings the stored items' earliest."""
        found = [self.first_event_period(),
                 None if calendar.earliest_posted else self.stored_earliest_posted()]
        return min((period for period in found if period is not None), default=None)

    def next_to_close(self) -> Period | None:
        """The one month that can close now (None while nothing is recorded)."""
        calendar = self.calendar()
        return calendar.next_to_close(self.activity_outside(calendar))

    def _note_activity(self, unit: Unit, calendar: BillingCalendar, periods: set[Period],
                       actor: str) -> None:
        """A posting earlier than the calendar knows of moves the first closable month back:
        it is written to the calendar, so it and a concurrent first close cannot both win."""
        if not periods or calendar.knows_activity_from(min(periods)):
            return
        stored = None if calendar.earliest_posted else self.stored_earliest_posted()
        unit.add(calendar).extend_activity(min(periods | ({stored} if stored else set())),
                                           actor)

    def post_consumption(self, items: list[ConsumptionInput], actor: str,
                         known: KnownItems = lambda item_ids: (),
                         project_links: dict[UUID, ProjectLinks] | None = None,
                         ) -> list[ConsumptionResult]:
        """Apply a batch atomically, cheapest first; a known item id replays its result.

        The batch records one ConsumptionItem per new item (its id derives from the
        caller's item id, so a racing duplicate fails the save's version check) and one
        ItemsDrawn per credit and period; every aggregate is loaded once per batch.

        ``known`` answers which item ids are already recorded, for the whole batch at
        once (the API asks the consumptions read model in one query). It may lag behind
        the store: an id it misses makes the save fail, and every retry then asks the
        event store about every item of the batch (one query on PostgreSQL), so such a
        duplicate still ends as replayed. ``project_links``, by project, are loaded with
        the projects (see ProjectLinks).
        """
        attempts = 0

        def command(unit: Unit) -> list[ConsumptionResult]:
            nonlocal attempts
            attempts += 1
            ids = [item.item_id for item in items]
            recorded = self.find_consumptions(ids if attempts > 1 else known(ids))
            prefetch(unit, items, project_links or {})
            found = unit.loaded.get(CALENDAR_ID)
            calendar = found if isinstance(found, BillingCalendar) else BillingCalendar()
            tally = drawing.DrawTally()
            results: dict[str, ConsumptionResult] = {}
            for item in sorted(items, key=lambda i: i.amount):
                if item.item_id in recorded:
                    results[item.item_id] = self._replay(recorded[item.item_id], item)
                    continue
                new = unit.add(self._apply_item(unit, tally, calendar, item, actor))
                results[item.item_id] = _result(new, replayed=False)
            tally.record(actor)
            self._note_activity(unit, calendar, {item.period for item in items
                                                 if item.item_id not in recorded}, actor)
            return [results[item.item_id] for item in items]

        return self.retrying(command)

    def _replay(self, recorded: ConsumptionItem, item: ConsumptionInput) -> ConsumptionResult:
        """A known id with the same content: the first answer's figures, replayed."""
        if recorded.reversed:
            reversal: Any = [e for e in self.events.get(recorded.id)
                             if isinstance(e, ConsumptionItem.Reversed)][-1]
            when = reversal.timestamp.astimezone(UTC)
            raise ItemIdReversed(
                f"Consumption item {recorded.item_id} was reversed at {when.isoformat()} by "
                f"{reversal.actor}; its id cannot be posted again.", when, reversal.actor)
        recorded.check_same(item.project_id, item.offering_id, item.amount, item.period)
        return _result(recorded, replayed=True)

    def _apply_item(self, unit: Unit, tally: drawing.DrawTally, calendar: BillingCalendar,
                    item: ConsumptionInput, actor: str) -> ConsumptionItem:
        """Split one item against the batch's running balances and tally its draws."""
        calendar.check_open(item.period)
        project = unit.get(item.project_id, Project)
        project.check_active()
        customer = unit.get(project.customer_id, Customer)
        cc = unit.get(customer.credit_id, CustomerCredit) if customer.credit_id else None
        if cc is not None and cc.is_settled(item.period):
            raise PeriodClosed(f"Billing period {item.period} is closed.", "period")
        pc = unit.get(project.credit_id, ProjectCredit) if project.credit_id else None
        split = drawing.split_cost(item.amount, item.period, item.offering_id, cc, pc,
                                   tally.available, tally.earmarked)
        drawn = split.from_project_credit + split.from_customer_credit
        through = tally.add_split(split, item.period, item.item_id, project.id, cc, pc)
        return ConsumptionItem(
            item_id=item.item_id, project_id=project.id, customer_id=customer.id,
            offering_id=item.offering_id, amount=item.amount, period=str(item.period),
            project_credit_id=through,
            customer_credit_id=cc.id if cc is not None and drawn else None,
            drawn_from_project_credit=split.from_project_credit,
            drawn_from_customer_credit=split.from_customer_credit,
            uncovered=split.uncovered, actor=actor)

    def reverse_consumption(self, item_id: str, actor: str) -> None:
        """Give an item's draws back while its period is open."""

        def command(unit: Unit) -> None:
            item = unit.get(consumption_id(item_id), ConsumptionItem)
            period = Period.parse(item.period)
            self.calendar().check_open(period)
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
        """Settle every organisation credit for the period (each atomically), then close it.

        Only the next month in line can close (BillingCalendar.check_closable). The close
        is begun on the calendar (CloseStarted) before anything is settled, so a posting
        that would move the first month back, or post into the month, conflicts with it or
        is refused; a close interrupted half-way is finished by closing the month again."""
        if (done := self.executed()) is not None:
            return cast(CloseResult, done.result)
        if period == self.calendar().latest_closed:
            return CloseResult(period, already_closed=True, customers_settled=0)

        def start(unit: Unit) -> None:
            calendar = unit.add(self.calendar())
            if calendar.earliest_posted is None:  # an earlier release's: learn it once
                stored = self.stored_earliest_posted()
                if stored is not None:
                    calendar.extend_activity(stored, actor)
            calendar.start_close(period, self.activity_outside(calendar), actor)

        with self.unkeyed():
            self.retrying(start)
            settled = self._each_organisation(customer_credit_ids, self._settle, period, actor,
                                              progress)

        def close(unit: Unit) -> CloseResult:
            calendar = unit.add(self.calendar())
            calendar.close(period, self.activity_outside(calendar), actor)
            return CloseResult(period, already_closed=False, customers_settled=settled)

        return self.retrying(close)

    def _each_organisation(self, credit_ids: Iterable[UUID], step: OrganisationStep,
                           period: Period, actor: str, progress: Callable[[int], None]) -> int:
        """Run a settlement step for every organisation credit, SETTLE_CHUNK per atomic save
        (each organisation's step is atomic all the more); returns how many it changed."""
        changed, done = 0, 0
        for chunk in chunks(list(credit_ids), SETTLE_CHUNK):
            changed += self._chunk(chunk, step, period, actor)
            done += len(chunk)
            progress(done)
        return changed

    def _chunk(self, credit_ids: list[UUID], step: OrganisationStep, period: Period,
               actor: str) -> int:
        """The organisations' credits loaded in two queries; a chunk that keeps losing to
        concurrent writers goes one organisation at a time."""

        def all_of(unit: Unit) -> int:
            unit.prefetch(dict.fromkeys(credit_ids, CustomerCredit))
            ccs = [cc for credit_id in credit_ids
                   if (cc := self.live(unit, credit_id, CustomerCredit)) is not None]
            unit.prefetch({UUID(key): ProjectCredit for cc in ccs for key in cc.allocations})
            return sum(step(unit, credit_id, period, actor) for credit_id in credit_ids)

        try:
            return self.retrying(all_of, attempts=3)
        except Conflict:
            return sum(self.retrying(partial(step, credit_id=credit_id, period=period,
                                             actor=actor)) for credit_id in credit_ids)

    def _settle(self, unit: Unit, credit_id: UUID, period: Period, actor: str) -> bool:
        """Floors, linear recalculation and expiry for the credits that existed during the
        period (Credit.existed_during); the organisation is marked settled either way."""
        cc = self.live(unit, credit_id, CustomerCredit)
        if cc is None or cc.is_settled(period):
            return False
        pcs = [unit.get(UUID(key), ProjectCredit) for key in cc.allocations]
        members = [credit for credit in [cc, *pcs] if credit.existed_during(period)]
        floors = {credit.id: floor_due(credit, period) for credit in members}
        for credit in members:
            credit.charge_floor(floors[credit.id], period, actor)
        for credit in members:
            if settlement.is_linear(credit.terms, period):
                consumed = credit.drawn_in(str(period)) + floors[credit.id]
                expected = settlement.linear_expected(credit.terms, credit.value, consumed, period)
                credit.recalculate_expected(expected, period, actor)
        for credit in members:
            if settlement.expires_at_close(credit.terms, period):
                credit.expire(period, actor)
        for pc in pcs:
            cc.sync_allocation(pc, actor)
        cc.mark_settled(period, actor)
        return True

    def reopen_period(self, period: Period, actor: str, customer_credit_ids: Iterable[UUID],
                      progress: Callable[[int], None] = lambda n: None) -> int:
        """Reverse the period's settlement with new events; nothing is deleted."""
        if (done := self.executed()) is not None:
            return cast(int, done.result)
        self.calendar().check_reopenable(period)
        with self.unkeyed():
            reopened = self._each_organisation(customer_credit_ids, self._unsettle, period,
                                               actor, progress)

        def reopen(unit: Unit) -> int:
            unit.add(self.calendar()).reopen(period, actor)
            return reopened

        return self.retrying(reopen)

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


def prefetch(unit: Unit, items: list[ConsumptionInput],
             guessed: dict[UUID, ProjectLinks]) -> None:
    """Load everything a batch touches, in one query when the cache knows the way.

    The calendar and the projects are wanted, with what the read models guessed they lead
    to; the cached (perhaps stale) states of the projects and customers name their
    customers and credits, so those are wanted in the same query. Then every link of the
    fresh states is followed for real, and anything the guesses missed is loaded in a
    further round.
    """
    projects = {item.project_id for item in items}
    wanted: dict[UUID, type[Aggregate]] = {CALENDAR_ID: BillingCalendar}
    wanted.update(dict.fromkeys(projects, Project))
    for project_id in projects & guessed.keys():
        for aggregate_id, cls in guessed[project_id].aggregates().items():
            wanted.setdefault(aggregate_id, cls)
    tried: set[UUID] = set()
    while wanted:
        guesses = list(wanted)
        while guesses:
            cached = peek(unit.app, guesses.pop())
            for aggregate_id, cls in (links(cached) if cached is not None else {}).items():
                if aggregate_id not in wanted and aggregate_id not in tried:
                    wanted[aggregate_id] = cls
                    guesses.append(aggregate_id)
        unit.prefetch(wanted)
        tried.update(wanted)
        wanted = {i: cls for aggregate in list(unit.loaded.values())
                  for i, cls in links(aggregate).items() if i not in tried}


def links(aggregate: Aggregate) -> dict[UUID, type[Aggregate]]:
    """The aggregates posting reaches from this one."""
    if isinstance(aggregate, Project):
        return {aggregate.customer_id: Customer,
                **({aggregate.credit_id: ProjectCredit} if aggregate.credit_id else {})}
    if isinstance(aggregate, Customer) and aggregate.credit_id:
        return {aggregate.credit_id: CustomerCredit}
    return {}


def chunks(items: list[UUID], size: int) -> Iterable[list[UUID]]:
    return (items[start:start + size] for start in range(0, len(items), size))


def floor_due(credit: Credit, period: Period) -> Decimal:
    """The floor shortfall a credit pays for the period (0 when it does not cover it)."""
    if not credit.covers(period):
        return Decimal(0)
    return settlement.floor_shortfall(
        credit.terms, period, credit.drawn_in(str(period)), credit.value
    )


def _result(item: ConsumptionItem, replayed: bool) -> ConsumptionResult:
    """The item's first answer (compensations since then do not change it)."""
    from_project, from_customer, uncovered = item.first_figures
    return ConsumptionResult(
        item_id=item.item_id, project_id=item.project_id, amount=item.amount,
        drawn_from_project_credit=from_project, drawn_from_customer_credit=from_customer,
        uncovered=uncovered, replayed=replayed)
