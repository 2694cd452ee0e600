"""The eventsourcing Application: one method per command (the service layer's core).

Each command loads the aggregates it touches, lets them check their rules, and saves
every changed aggregate in one atomic save. A concurrent writer makes the save fail on
the version check; the command is then re-run on fresh state a bounded number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Transcoding

from ledger import drawing, settlement
from ledger.consumption import CALENDAR_ID, BillingCalendar, ConsumptionItem, consumption_id
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.directory import Customer, Offering, Project
from ledger.errors import (
    Conflict,
    NoCustomerCredit,
    NotFound,
    PeriodClosed,
    RuleViolation,
    check_version,
)
from ledger.periods import Period
from ledger.terms import Terms
from ledger.users import User, hash_token

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
MAX_ATTEMPTS = 12


class DateAsISO(Transcoding):
    """eventsourcing does not transcode datetime.date by default."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class TermsAsDict(Transcoding):
    """Credit aggregates hold Terms; snapshots (every 100 events) must encode them."""

    type = Terms
    name = "credit_terms"

    def encode(self, obj: Terms) -> dict[str, Any]:
        return obj.as_kwargs()

    def decode(self, data: dict[str, Any]) -> Terms:
        return Terms(**data)


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


class _Unit:
    """The aggregates one command has loaded (each once) and changed."""

    def __init__(self, app: Ledger) -> None:
        self.app = app
        self.loaded: dict[UUID, Aggregate] = {}

    def get(self, aggregate_id: UUID, cls: type[A]) -> A:
        if aggregate_id not in self.loaded:
            self.loaded[aggregate_id] = self.app.get(aggregate_id, cls)
        aggregate = self.loaded[aggregate_id]
        assert isinstance(aggregate, cls)
        return aggregate

    def add(self, aggregate: A) -> A:
        self.loaded[aggregate.id] = aggregate
        return aggregate

    def save(self) -> int:
        recordings = self.app.save(*self.loaded.values())
        return max((r.notification.id for r in recordings), default=0)


class Ledger(Application[UUID]):
    """The credit ledger: directory, credits, consumption and settlement commands."""

    name = "Ledger"
    snapshotting_intervals = {CustomerCredit: 100, ProjectCredit: 100}

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(TermsAsDict())

    # --- plumbing ------------------------------------------------------------------------

    def get(self, aggregate_id: UUID, cls: type[A]) -> A:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"No {cls.__name__} {aggregate_id.hex}.") from None
        if not isinstance(aggregate, cls) or getattr(aggregate, "deleted", False):
            raise NotFound(f"No {cls.__name__} {aggregate_id.hex}.")
        return aggregate

    def retrying(self, command: Callable[[_Unit], T]) -> T:
        """Run a command on fresh state until its save wins the version check."""
        for attempt in range(MAX_ATTEMPTS):
            unit = _Unit(self)
            result = command(unit)
            try:
                unit.save()
                return result
            except IntegrityError:
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise Conflict("The credit was changed concurrently; please retry.")

    # --- directory -----------------------------------------------------------------------

    def register_customer(self, name: str, slug: str, actor: str) -> UUID:
        check_text(name=name, slug=slug)
        customer = Customer(name=name, slug=slug, actor=actor)
        self.save(customer)
        return customer.id

    def register_project(self, name: str, slug: str, customer_id: UUID, actor: str) -> UUID:
        check_text(name=name, slug=slug)
        self.get(customer_id, Customer)
        project = Project(name=name, slug=slug, customer_id=customer_id, actor=actor)
        self.save(project)
        return project.id

    def register_offering(self, name: str, type: str, actor: str) -> UUID:
        check_text(name=name, type=type)
        offering = Offering(name=name, type=type, actor=actor)
        self.save(offering)
        return offering.id

    def create_user(self, username: str, token: str, is_staff: bool, is_support: bool,
                    actor: str) -> UUID:
        check_text(username=username)
        user = User(username=username, token_hash=hash_token(token), is_staff=is_staff,
                    is_support=is_support, actor=actor)
        try:
            self.save(user)
        except IntegrityError:
            raise RuleViolation(f"User {username!r} already exists.", "username") from None
        return user.id

    def grant_role(self, username: str, scope: str, scope_id: UUID, role: str,
                   actor: str) -> None:
        def command(unit: _Unit) -> None:
            unit.get(scope_id, Customer if scope == "customer" else Project)
            user = unit.get(User.create_id(username), User)
            user.grant(scope, scope_id, role, actor)

        self.retrying(command)

    def revoke_role(self, username: str, scope: str, scope_id: UUID, role: str,
                    actor: str) -> None:
        self.retrying(
            lambda unit: unit.get(User.create_id(username), User).revoke(
                scope, scope_id, role, actor
            )
        )

    # --- customer credits ----------------------------------------------------------------

    def create_customer_credit(self, customer_id: UUID, value: Decimal, terms: Terms,
                               offering_ids: list[UUID], actor: str) -> UUID:
        def command(unit: _Unit) -> UUID:
            customer = unit.get(customer_id, Customer)
            for offering_id in offering_ids:
                unit.get(offering_id, Offering)
            terms.check()
            credit = unit.add(CustomerCredit(customer_id=customer_id, value=value,
                                             terms=terms.as_kwargs(),
                                             offering_ids=offering_ids, actor=actor))
            customer.attach_credit(credit.id, actor)
            return credit.id

        return self.retrying(command)

    def update_customer_credit(self, credit_id: UUID, actor: str, value: Decimal | None = None,
                               terms: dict[str, Any] | None = None,
                               offering_ids: list[UUID] | None = None,
                               expected_version: int | None = None) -> None:
        def command(unit: _Unit) -> None:
            credit = unit.get(credit_id, CustomerCredit)
            check_version(credit.version, expected_version)
            if value is not None:
                credit.set_value(value, actor)
            new_terms = credit.terms.updated(**(terms or {}))
            new_terms.check()
            credit.change_terms(new_terms, actor)
            if offering_ids is not None:
                for offering_id in offering_ids:
                    unit.get(offering_id, Offering)
                credit.change_offerings(offering_ids, actor)

        self.retrying(command)

    def delete_customer_credit(self, credit_id: UUID, actor: str,
                               expected_version: int | None = None) -> None:
        """Deleting the organisation credit deletes its project credits (as upstream)."""

        def command(unit: _Unit) -> None:
            credit = unit.get(credit_id, CustomerCredit)
            check_version(credit.version, expected_version)
            for key in list(credit.allocations):
                self._delete_project_credit(unit, credit, UUID(key), actor)
            credit.delete(actor)
            unit.get(credit.customer_id, Customer).detach_credit(actor)

        self.retrying(command)

    # --- project credits -----------------------------------------------------------------

    def create_project_credit(self, project_id: UUID, value: Decimal, terms: Terms,
                              mark_unused: bool, actor: str) -> UUID:
        def command(unit: _Unit) -> UUID:
            project = unit.get(project_id, Project)
            customer_credit = self._customer_credit_of(unit, project)
            credit = unit.add(ProjectCredit(
                project_id=project_id, customer_id=project.customer_id, value=value,
                terms=terms.as_kwargs(),
                mark_unused_credit_as_spent_on_project_termination=mark_unused, actor=actor))
            project.attach_credit(credit.id, actor)
            customer_credit.check_allocation(credit.id, value)
            terms.check()
            customer_credit.sync_allocation(credit, actor)
            return credit.id

        return self.retrying(command)

    def update_project_credit(self, credit_id: UUID, actor: str,
                              project_id: UUID | None = None, value: Decimal | None = None,
                              terms: dict[str, Any] | None = None,
                              mark_unused: bool | None = None,
                              expected_version: int | None = None) -> None:
        def command(unit: _Unit) -> None:
            credit = unit.get(credit_id, ProjectCredit)
            check_version(credit.version, expected_version)
            project = unit.get(credit.project_id, Project)
            project.check_active()
            customer_credit = self._customer_credit_of(unit, project)
            if project_id is not None and project_id != credit.project_id:
                self._move(unit, credit, project, project_id, actor)
            if value is not None:
                customer_credit.check_allocation(credit.id, value)
            new_terms = credit.terms.updated(**(terms or {}))
            new_terms.check()
            if value is not None:
                credit.set_value(value, actor)
                customer_credit.sync_allocation(credit, actor)
            credit.change_terms(new_terms, actor)
            if mark_unused is not None:
                credit.set_mark_unused(mark_unused, actor)

        self.retrying(command)

    def _move(self, unit: _Unit, credit: ProjectCredit, old: Project, new_project_id: UUID,
              actor: str) -> None:
        new = unit.get(new_project_id, Project)
        if new.customer_id != old.customer_id:
            raise RuleViolation(
                "A project credit cannot be moved to another organization's project.", "project"
            )
        new.attach_credit(credit.id, actor)
        old.detach_credit(actor)
        credit.move(new_project_id, actor)

    def delete_project_credit(self, credit_id: UUID, actor: str,
                              expected_version: int | None = None) -> None:
        """The allocation returns to the unallocated pool; the organisation value stays."""

        def command(unit: _Unit) -> None:
            credit = unit.get(credit_id, ProjectCredit)
            check_version(credit.version, expected_version)
            customer = unit.get(credit.customer_id, Customer)
            customer_credit = (
                unit.get(customer.credit_id, CustomerCredit) if customer.credit_id else None
            )
            self._delete_project_credit(unit, customer_credit, credit_id, actor)

        self.retrying(command)

    def _delete_project_credit(self, unit: _Unit, customer_credit: CustomerCredit | None,
                               credit_id: UUID, actor: str) -> None:
        credit = unit.get(credit_id, ProjectCredit)
        credit.delete(actor)
        unit.get(credit.project_id, Project).detach_credit(actor)
        if customer_credit is not None:
            customer_credit.sync_allocation(credit, actor)

    def _customer_credit_of(self, unit: _Unit, project: Project) -> CustomerCredit:
        customer = unit.get(project.customer_id, Customer)
        if customer.credit_id is None:
            raise NoCustomerCredit("Customer credit does not exist.")
        return unit.get(customer.credit_id, CustomerCredit)

    # --- consumption ---------------------------------------------------------------------

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

        def command(unit: _Unit) -> list[ConsumptionResult]:
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

    def _apply_item(self, unit: _Unit, calendar: BillingCalendar, item: ConsumptionInput,
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

        def command(unit: _Unit) -> None:
            item = unit.get(consumption_id(item_id), ConsumptionItem)
            period = Period.parse(item.period)
            if self.calendar().is_closed(period):
                raise PeriodClosed(f"Billing period {period} is closed.", "period")
            item.reverse(actor)
            cc = self._live(unit, item.customer_credit_id, CustomerCredit)
            pc = self._live(unit, item.project_credit_id, ProjectCredit)
            if cc is not None and cc.is_settled(period):
                raise PeriodClosed(f"Billing period {period} is closed.", "period")
            if pc is not None:
                pc.reverse_draw(item.drawn_from_project_credit, period, item_id, actor)
            if cc is not None:
                cc.reverse_draw(item.drawn, period, item_id, actor)
                if pc is not None:
                    cc.sync_allocation(pc, actor)

        self.retrying(command)

    def _live(self, unit: _Unit, aggregate_id: UUID | None, cls: type[A]) -> A | None:
        if aggregate_id is None:
            return None
        try:
            return unit.get(aggregate_id, cls)
        except NotFound:
            return None

    # --- settlement ----------------------------------------------------------------------

    def close_period(self, period: Period, actor: str, customer_credit_ids: Iterable[UUID],
                     progress: Callable[[int], None] = lambda n: None) -> CloseResult:
        """Settle every organisation credit for the period (each atomically), then close it."""
        if self.calendar().is_closed(period):
            return CloseResult(period, already_closed=True, customers_settled=0)
        settled = 0
        for credit_id in customer_credit_ids:
            if self.retrying(partial(self._settle, credit_id=credit_id, period=period,
                                     actor=actor)):
                settled += 1
            progress(settled)

        def close(unit: _Unit) -> None:
            unit.add(self.calendar()).close(period, actor)

        self.retrying(close)
        return CloseResult(period, already_closed=False, customers_settled=settled)

    def _settle(self, unit: _Unit, credit_id: UUID, period: Period, actor: str) -> bool:
        cc = self._live(unit, credit_id, CustomerCredit)
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

    def reopen_period(self, period: Period, actor: str,
                      customer_credit_ids: Iterable[UUID]) -> int:
        """Reverse the period's settlement with new events; nothing is deleted."""
        self.calendar().check_reopenable(period)
        reopened = 0
        for credit_id in customer_credit_ids:
            if self.retrying(partial(self._unsettle, credit_id=credit_id, period=period,
                                     actor=actor)):
                reopened += 1

        def reopen(unit: _Unit) -> None:
            unit.add(self.calendar()).reopen(period, actor)

        self.retrying(reopen)
        return reopened

    def _unsettle(self, unit: _Unit, credit_id: UUID, period: Period, actor: str) -> bool:
        cc = self._live(unit, credit_id, CustomerCredit)
        if cc is None or not cc.is_settled(period):
            return False
        for key in cc.allocations:
            pc = unit.get(UUID(key), ProjectCredit)
            pc.reverse_settlement(period, actor)
            cc.sync_allocation(pc, actor)
        cc.reverse_settlement(period, actor)
        cc.mark_reopened(period, actor)
        return True

    # --- project termination -------------------------------------------------------------

    def terminate_project(self, project_id: UUID, actor: str) -> None:
        """The project credit goes to 0; its unused part is written off or freed."""

        def command(unit: _Unit) -> None:
            project = unit.get(project_id, Project)
            project.terminate(actor)
            if project.credit_id is None:
                return
            pc = unit.get(project.credit_id, ProjectCredit)
            customer = unit.get(project.customer_id, Customer)
            cc = self._live(unit, customer.credit_id, CustomerCredit)
            unused = pc.release(actor)
            if cc is not None:
                if pc.mark_unused:
                    cc.write_off(unused, project_id, "project terminated", actor)
                cc.sync_allocation(pc, actor)

        self.retrying(command)


def check_text(**fields: str) -> None:
    """Names end up in every store and report: no NUL (PostgreSQL refuses it), no surrogates."""
    for field, text in fields.items():
        if "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text):
            raise RuleViolation("Null and surrogate characters are not allowed.", field)


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
