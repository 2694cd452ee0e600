"""Builds the data the benchmarks run against, through the Ledger's own commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from ledger.application import Ledger
from ledger.periods import Period
from ledger.posting import ConsumptionInput
from ledger.terms import Terms

ACTOR = "bench"
ORG_VALUE = Decimal("1000000000")  # large enough never to run out during a benchmark
PROJECT_VALUE = Decimal("100000000")


@dataclass(frozen=True)
class Funded:
    """A customer with an organisation credit and one project with a project credit."""

    customer_id: UUID
    project_id: UUID
    customer_credit_id: UUID
    project_credit_id: UUID


def current_period() -> Period:
    return Period.of(datetime.now(UTC).date())


def funded_project(ledger: Ledger, n: int = 0) -> Funded:
    customer_id = ledger.register_customer(f"Bench org {n}", f"bench-org-{n}", ACTOR)
    project_id = ledger.register_project(f"Bench project {n}", f"bench-project-{n}",
                                         customer_id, ACTOR)
    cc = ledger.create_customer_credit(customer_id, ORG_VALUE, Terms(), [], ACTOR)
    pc = ledger.create_project_credit(project_id, PROJECT_VALUE, Terms(), False, ACTOR)
    return Funded(customer_id, project_id, cc, pc)


def funded_projects(ledger: Ledger, count: int, per_org: int) -> list[UUID]:
    """``count`` projects with project credits, ``per_org`` of them under each organisation."""
    project_ids = []
    for org in range(-(-count // per_org)):
        customer_id = ledger.register_customer(f"Bench org {org}", f"bench-org-{org}", ACTOR)
        ledger.create_customer_credit(customer_id, ORG_VALUE, Terms(), [], ACTOR)
        for n in range(org * per_org, min(count, (org + 1) * per_org)):
            project_id = ledger.register_project(f"Bench project {n}", f"bench-project-{n}",
                                                 customer_id, ACTOR)
            ledger.create_project_credit(project_id, ORG_VALUE / per_org, Terms(), False, ACTOR)
            project_ids.append(project_id)
    return project_ids


def item(item_id: str, project_id: UUID, period: Period,
         amount: Decimal = Decimal("0.01")) -> ConsumptionInput:
    return ConsumptionInput(item_id=item_id, project_id=project_id, offering_id=None,
                            amount=amount, period=period)
