"""Import from another credits service (Waldur): source uuids kept, many records per save.

Records arrive in chunks (a page of the source). Each chunk is one atomic save of every
aggregate it created or changed, so a killed import leaves whole chunks and a re-run
carries on. A record whose uuid the ledger already holds is compared, never changed: the
differences are reported. A record that breaks a rule is rejected with its reason and the
rest of the chunk goes on; every rule is checked before any aggregate is touched, so a
rejected record leaves nothing behind.

Fast path: a fresh chunk is created without looking its uuids up one by one. If one
already existed (or a concurrent writer moved an aggregate), the save fails as a whole on
the store's version check and the chunk is redone carefully, looking every uuid up; chunks
stay careful while they keep meeting records the ledger already holds (a re-run).
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.application import check_text
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.directory import Customer, Offering, Project
from ledger.errors import Conflict, LedgerError, NoCustomerCredit, NotFound, RuleViolation
from ledger.store import MAX_ATTEMPTS, LedgerBase, Unit
from ledger.terms import Terms

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class OfferingRecord:
    uuid: UUID
    name: str
    type: str

    kind = "offering"


@dataclass(frozen=True)
class CustomerRecord:
    uuid: UUID
    name: str
    slug: str

    kind = "customer"


@dataclass(frozen=True)
class ProjectRecord:
    uuid: UUID
    name: str
    slug: str
    customer_uuid: UUID

    kind = "project"


@dataclass(frozen=True)
class CustomerCreditRecord:
    uuid: UUID
    customer_uuid: UUID
    value: Decimal
    terms: Terms
    offering_uuids: tuple[UUID, ...]

    kind = "customer credit"


@dataclass(frozen=True)
class ProjectCreditRecord:
    uuid: UUID
    project_uuid: UUID
    value: Decimal
    terms: Terms
    mark_unused: bool

    kind = "project credit"


Record = (OfferingRecord | CustomerRecord | ProjectRecord | CustomerCreditRecord
          | ProjectCreditRecord)
CREATED, SAME, DIFFERS, REJECTED = "created", "unchanged", "differs", "rejected"


@dataclass(frozen=True)
class Outcome:
    """What happened to one record; ``message`` says what differs or why it was refused."""

    record: Record
    status: str
    message: str = ""


@dataclass
class Tally:
    """Counts per kind and status, and the time spent recording (not reading)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    recording_seconds: float = 0.0

    def add(self, kind: str, status: str) -> None:
        counts = self.counts.setdefault(kind, dict.fromkeys((CREATED, SAME, DIFFERS, REJECTED), 0))
        counts[status] += 1

    def total(self, status: str) -> int:
        return sum(counts[status] for counts in self.counts.values())


def create_with_id(cls: type[A], event_class: type[Any], aggregate_id: UUID, **kwargs: Any) -> A:
    """A new aggregate under the source's uuid; its created event is the usual one, with
    the constructor's defaults for what the import does not give (the event needs them all).
    """
    optional = {name: parameter.default for name, parameter
                in inspect.signature(cls.__init__).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    return cls._create(event_class, id=aggregate_id, **{**optional, **kwargs})


class ImportUnit(Unit):
    """A chunk's aggregates: those recorded earlier in this import are reused, not reloaded."""

    def __init__(self, app: LedgerBase, known: dict[UUID, Aggregate]) -> None:
        super().__init__(app)
        self.known = known

    def get(self, aggregate_id: UUID, cls: type[A]) -> A:
        found = self.loaded.get(aggregate_id) or self.known.get(aggregate_id)
        if found is None:
            found = self.app.get(aggregate_id, cls)
        if not isinstance(found, cls) or getattr(found, "deleted", False):
            raise NotFound(f"No {cls.__name__} {aggregate_id.hex}.")
        self.loaded[aggregate_id] = found
        return found

    def save(self) -> None:
        """One atomic put of every pending event, snapshots where due, as Application.save
        does, but without its per-object protocol checks (a quarter of a bulk save's time)."""
        events = [event for aggregate in self.loaded.values()
                  for event in aggregate.collect_events()]
        self.app.events.put(events)
        self.app.observer.saved(events)
        intervals = self.app.snapshotting_intervals or {}
        for event in events:
            interval = intervals.get(type(self.loaded[event.originator_id]))
            if interval and event.originator_version % interval == 0:
                self.app.take_snapshot(event.originator_id, event.originator_version)

    def find(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate with this id in any state (deleted too), or None."""
        found = self.loaded.get(aggregate_id) or self.known.get(aggregate_id)
        if found is not None:
            return found
        try:
            aggregate: Aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        self.loaded[aggregate_id] = aggregate
        return aggregate


class Importer:
    """Records a stream of source records into the ledger, chunk by chunk, as ``actor``."""

    # Later records refer to these; project credits are referred to by nothing.
    REMEMBERED = (Offering, Customer, Project, CustomerCredit)

    def __init__(self, ledger: LedgerBase, actor: str,
                 report: Callable[[Outcome], None] = lambda outcome: None) -> None:
        self.ledger = ledger
        self.actor = actor
        self.report = report
        self.known: dict[UUID, Aggregate] = {}
        self.tally = Tally()
        self.careful = False  # a chunk that met existing records makes the next one careful

    def record(self, chunk: list[Record]) -> list[Outcome]:
        """One atomic save for the chunk; redone carefully if the fast path collided."""
        started = time.perf_counter()
        for attempt in range(MAX_ATTEMPTS):
            careful = self.careful or attempt > 0
            unit = ImportUnit(self.ledger, self.known)
            outcomes = [self._one(unit, record, careful) for record in chunk]
            try:
                unit.save()
            except IntegrityError:
                for aggregate_id in unit.loaded:  # their in-memory state is not the store's
                    self.known.pop(aggregate_id, None)
                time.sleep(random.uniform(0, 0.005 * attempt))
                continue
            self.known.update((k, v) for k, v in unit.loaded.items()
                              if isinstance(v, self.REMEMBERED))
            self.careful = careful and any(o.status != CREATED for o in outcomes)
            self.tally.recording_seconds += time.perf_counter() - started
            for outcome in outcomes:
                self.tally.add(outcome.record.kind, outcome.status)
                self.report(outcome)
            return outcomes
        raise Conflict("The ledger was changed concurrently; please run the import again.")

    def _one(self, unit: ImportUnit, record: Record, careful: bool) -> Outcome:
        existing = (unit.find(record.uuid) if careful
                    else unit.loaded.get(record.uuid) or self.known.get(record.uuid))
        if existing is None:
            try:
                CREATORS[type(record)](unit, record, self.actor)
                return Outcome(record, CREATED)
            except LedgerError as error:
                existing = None if careful else unit.find(record.uuid)
                if existing is None:
                    return Outcome(record, REJECTED, _reason(error))
        differences = compare(unit, record, existing)
        return Outcome(record, DIFFERS if differences else SAME, "; ".join(differences))


def _reason(error: LedgerError) -> str:
    return f"{error.field}: {error.message}" if error.field else error.message


# --- creating, every rule checked before anything changes ---------------------------------

def _offering(unit: ImportUnit, record: OfferingRecord, actor: str) -> None:
    check_text(name=record.name, type=record.type)
    unit.add(create_with_id(Offering, Offering.Registered, record.uuid, name=record.name,
                            type=record.type, actor=actor))


def _customer(unit: ImportUnit, record: CustomerRecord, actor: str) -> None:
    check_text(name=record.name, slug=record.slug)
    unit.add(create_with_id(Customer, Customer.Registered, record.uuid, name=record.name,
                            slug=record.slug, actor=actor))


def _project(unit: ImportUnit, record: ProjectRecord, actor: str) -> None:
    check_text(name=record.name, slug=record.slug)
    unit.get(record.customer_uuid, Customer)
    unit.add(create_with_id(Project, Project.Registered, record.uuid, name=record.name,
                            slug=record.slug, customer_id=record.customer_uuid, actor=actor))


def _customer_credit(unit: ImportUnit, record: CustomerCreditRecord, actor: str) -> None:
    customer = unit.get(record.customer_uuid, Customer)
    for offering_id in record.offering_uuids:
        unit.get(offering_id, Offering)
    check_balance(record.value, record.terms)
    if customer.credit_id is not None:
        raise RuleViolation(*Customer.duplicate)
    credit = unit.add(create_with_id(
        CustomerCredit, CustomerCredit.Created, record.uuid, customer_id=record.customer_uuid,
        value=record.value, terms=record.terms.as_kwargs(),
        offering_ids=list(record.offering_uuids), actor=actor))
    customer.attach_credit(credit.id, actor)


def _project_credit(unit: ImportUnit, record: ProjectCreditRecord, actor: str) -> None:
    project = unit.get(record.project_uuid, Project)
    project.check_active()
    if project.credit_id is not None:
        raise RuleViolation(*Project.duplicate)
    customer = unit.get(project.customer_id, Customer)
    if customer.credit_id is None:
        raise NoCustomerCredit("Customer credit does not exist.")
    customer_credit = unit.get(customer.credit_id, CustomerCredit)
    check_balance(record.value, record.terms)
    customer_credit.check_allocation(record.uuid, record.value)
    credit = unit.add(create_with_id(
        ProjectCredit, ProjectCredit.Created, record.uuid, project_id=record.project_uuid,
        customer_id=project.customer_id, value=record.value, terms=record.terms.as_kwargs(),
        mark_unused_credit_as_spent_on_project_termination=record.mark_unused, actor=actor))
    project.attach_credit(credit.id, actor)
    customer_credit.sync_allocation(credit, actor)


CREATORS: dict[type[Any], Callable[[ImportUnit, Any, str], None]] = {
    OfferingRecord: _offering,
    CustomerRecord: _customer,
    ProjectRecord: _project,
    CustomerCreditRecord: _customer_credit,
    ProjectCreditRecord: _project_credit,
}


def check_balance(value: Decimal, terms: Terms) -> None:
    if value < 0:
        raise RuleViolation("Ensure this value is greater than or equal to 0.", "value")
    terms.check()


# --- comparing what the ledger holds with the source --------------------------------------

def compare(unit: ImportUnit, record: Record, existing: Aggregate) -> list[str]:
    """Each field whose source value differs from the ledger's, as 'field: source → ledger'."""
    expected_class = {OfferingRecord: Offering, CustomerRecord: Customer,
                      ProjectRecord: Project, CustomerCreditRecord: CustomerCredit,
                      ProjectCreditRecord: ProjectCredit}[type(record)]
    if not isinstance(existing, expected_class):
        return [f"the ledger holds a {type(existing).__name__} under this uuid"]
    if isinstance(existing, Credit) and existing.deleted:
        return ["deleted in the ledger"]
    pairs = _pairs(record, existing)
    return [f"{name}: {_shown(source)} in the source, {_shown(ledger)} in the ledger"
            for name, source, ledger in pairs if source != ledger]


def _pairs(record: Record, existing: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(record, OfferingRecord):
        return [("name", record.name, existing.name), ("type", record.type, existing.type)]
    if isinstance(record, CustomerRecord):
        return [("name", record.name, existing.name), ("slug", record.slug, existing.slug)]
    if isinstance(record, ProjectRecord):
        return [("name", record.name, existing.name), ("slug", record.slug, existing.slug),
                ("customer", record.customer_uuid, existing.customer_id)]
    terms = [(name, value, getattr(existing.terms, name))
             for name, value in record.terms.as_kwargs().items()]
    if isinstance(record, CustomerCreditRecord):
        return [("customer", record.customer_uuid, existing.customer_id),
                ("value", record.value, existing.value), *terms,
                ("offerings", sorted(record.offering_uuids), sorted(existing.offering_ids))]
    return [("project", record.project_uuid, existing.project_id),
            ("value", record.value, existing.value), *terms,
            ("mark_unused_credit_as_spent_on_project_termination", record.mark_unused,
             existing.mark_unused)]


def _shown(value: Any) -> str:
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)
