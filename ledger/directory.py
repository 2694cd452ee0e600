"""Directory aggregates: organisations (customers), projects and offerings.

Upstream owns these; here they are registered so that hyperlinks resolve and names
appear on credits and reports. Each holds the id of its credit, which makes
"one credit per customer / per project" a rule checked on one stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import DuplicateCredit, ProjectTerminated
from ledger.loading import CopiedByContainers


class CreditHolder(CopiedByContainers, Aggregate):
    """Holds the id of at most one credit: where "one credit per …" is checked."""

    CreditAttached: ClassVar[type[Aggregate.Event]]
    CreditDetached: ClassVar[type[Aggregate.Event]]
    if TYPE_CHECKING:  # a class annotation would make eventsourcing expect it at creation
        credit_id: UUID | None
    duplicate: ClassVar[tuple[str, str]]  # upstream's message and field

    def attach_credit(self, credit_id: UUID, actor: str) -> None:
        if self.credit_id is not None:
            raise DuplicateCredit(*self.duplicate)
        self._credit_attached(credit_id=credit_id, actor=actor)

    @event("CreditAttached")
    def _credit_attached(self, credit_id: UUID, actor: str) -> None:
        self.credit_id = credit_id

    def detach_credit(self, actor: str) -> None:
        if self.credit_id is not None:
            self._credit_detached(actor=actor)

    @event("CreditDetached")
    def _credit_detached(self, actor: str) -> None:
        self.credit_id = None


class Customer(CreditHolder):
    """An organisation that may hold one organisation credit."""

    Registered: ClassVar[type[Aggregate.Event]]
    duplicate = ("customer credit with this customer already exists.", "customer")

    @event("Registered")
    def __init__(self, name: str, slug: str, actor: str) -> None:
        self.name = name
        self.slug = slug
        self.credit_id = None


class Project(CreditHolder):
    """A project of a customer; may hold one project credit; can be terminated."""

    Registered: ClassVar[type[Aggregate.Event]]
    Terminated: ClassVar[type[Aggregate.Event]]
    duplicate = ("project credit with this project already exists.", "project")

    @event("Registered")
    def __init__(self, name: str, slug: str, customer_id: UUID, actor: str) -> None:
        self.name = name
        self.slug = slug
        self.customer_id = customer_id
        self.credit_id = None
        self.terminated = False

    def check_active(self) -> None:
        if self.terminated:
            raise ProjectTerminated("The project is terminated.", "project")

    def attach_credit(self, credit_id: UUID, actor: str) -> None:
        self.check_active()
        super().attach_credit(credit_id, actor)

    def terminate(self, actor: str) -> None:
        self.check_active()
        self._terminated(actor=actor)

    @event("Terminated")
    def _terminated(self, actor: str) -> None:
        self.terminated = True


class Offering(Aggregate):
    """A marketplace offering that consumption can be attributed to."""

    Registered: ClassVar[type[Aggregate.Event]]

    @event("Registered")
    def __init__(self, name: str, type: str, actor: str) -> None:
        self.name = name
        self.type = type
