"""Read model of organisation and project credits: balances, terms, names, offerings.

Each credit row carries the names and slugs its list filters and orders on. An
organisation credit's row also carries its allocation to projects and its offering
restriction; the customer's row points at its live organisation credit, which is how
a project credit's events find the organisation row to keep `allocated_to_projects`.
Whether a project credit is listed (upstream hides credits of organisations without a
credit) is kept on its row, and the number of listed rows in `counters`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.money import ZERO
from projections.changes import Changes, Row
from projections.dispatch import Dispatch
from projections.tables import (
    counters,
    customer_credits,
    customers,
    offerings,
    project_credits,
    projects,
)

project = Dispatch()
LISTED_COUNTER = {"project_credits": "project_credits.listed",
                  "customer_credits": "customer_credits.listed"}


def table_of(event: Any) -> Any:
    return customer_credits if isinstance(event, CustomerCredit.Event) else project_credits


def is_listed(table: Any, row: Row) -> bool:
    return bool(row["listed"]) if table is project_credits else not row["deleted"]


def organisation_row(changes: Changes, customer_uuid: str) -> Row | None:
    """The customer's live organisation credit row, if it has one."""
    customer = changes.get(customers, customer_uuid)
    credit_uuid = customer["credit_uuid"] if customer else None
    return changes.get(customer_credits, credit_uuid) if credit_uuid else None


def _terms(terms: dict[str, Any]) -> dict[str, Any]:
    return {**terms, "grace_coefficient": int(terms["grace_coefficient"])}


def _touch(event: Any, changes: Changes, **values: Any) -> Row:
    """Every credit event moves the row's version and modified time."""
    table = table_of(event)
    row = changes.row(table, event.originator_id.hex)
    was_listed = is_listed(table, row)
    changes.update(table, (row["uuid"],), version=event.originator_version,
                   modified=event.timestamp, **values)
    _count_listed(changes, table, is_listed(table, row) - was_listed)
    return row


def _count_listed(changes: Changes, table: Any, delta: int) -> None:
    if delta:
        changes.add(counters, LISTED_COUNTER[table.name], value=delta)


def _created(event: Any, customer: Row) -> dict[str, Any]:
    return dict(uuid=event.originator_id.hex, value=event.value, deleted=False,
                customer_uuid=customer["uuid"], customer_name=customer["name"],
                customer_slug=customer["slug"], version=event.originator_version,
                created=event.timestamp, modified=event.timestamp, low_balance_thresholds="[]",
                **_terms(event.terms))


def _offerings_json(changes: Changes, offering_ids: list[Any]) -> str:
    found = [changes.row(offerings, offering_id.hex) for offering_id in offering_ids]
    return json.dumps([[o["uuid"], o["name"], o["type"]] for o in found])


@project.on(CustomerCredit.Created)
def _(event: Any, changes: Changes, position: int) -> None:
    customer = changes.row(customers, event.customer_id.hex)
    changes.insert(customer_credits, dict(
        allocated_to_projects=0, offerings=_offerings_json(changes, event.offering_ids),
        withdrawable_balance=0,
        protect_allocations=getattr(event, "protect_allocations", False),  # older events lack it
        **_created(event, customer)))
    changes.update(customers, (customer["uuid"],), credit_uuid=event.originator_id.hex)
    _count_listed(changes, customer_credits, 1)


@project.on(ProjectCredit.Created)
def _(event: Any, changes: Changes, position: int) -> None:
    customer = changes.row(customers, event.customer_id.hex)
    found = changes.row(projects, event.project_id.hex)
    organisation = organisation_row(changes, customer["uuid"])
    changes.insert(project_credits, dict(
        project_uuid=found["uuid"], project_name=found["name"], project_slug=found["slug"],
        mark_unused_credit_as_spent_on_project_termination=(
            event.mark_unused_credit_as_spent_on_project_termination),
        listed=organisation is not None, **_created(event, customer)))
    _count_listed(changes, project_credits, int(organisation is not None))
    _allocate(changes, customer["uuid"], event.value)


def _allocate(changes: Changes, customer_uuid: str, amount: Any) -> None:
    organisation = organisation_row(changes, customer_uuid)
    if amount and organisation is not None:
        changes.update(customer_credits, (organisation["uuid"],),
                       allocated_to_projects=organisation["allocated_to_projects"] + amount)


@project.on(CustomerCredit.Deleted)
def _(event: Any, changes: Changes, position: int) -> None:
    """Upstream hides project credits of an organisation without a credit."""
    row = changes.row(customer_credits, event.originator_id.hex)
    _touch(event, changes, value=row["value"] + event.amount, deleted=True)
    changes.update(customers, (row["customer_uuid"],), credit_uuid=None)
    for credit in changes.find(project_credits, customer_uuid=row["customer_uuid"],
                               listed=True):
        changes.update(project_credits, (credit["uuid"],), listed=False)
        _count_listed(changes, project_credits, -1)


@project.on(Credit.BalanceChanged)
def _(event: Any, changes: Changes, position: int) -> None:
    table = table_of(event)
    row = changes.row(table, event.originator_id.hex)
    extra: dict[str, Any] = {}
    if isinstance(event, Credit.Deleted):
        extra = {"deleted": True, "listed": False} if table is project_credits else {
            "deleted": True}
    if isinstance(event, Credit.SettlementReversed) and event.expected_consumption is not None:
        extra["expected_consumption"] = event.expected_consumption
    value = row["value"] + event.amount
    if table is customer_credits:
        extra["withdrawable_balance"] = withdrawable_after(event, row["withdrawable_balance"],
                                                          value)
    _touch(event, changes, value=value, **extra)
    if table is project_credits:
        _allocate(changes, row["customer_uuid"], event.amount)


def withdrawable_after(event: Any, withdrawable: Decimal, value: Decimal) -> Decimal:
    """As CustomerCredit keeps it: adjusted by its own events, never above the balance."""
    if isinstance(event, CustomerCredit.WithdrawableAdjusted):
        withdrawable += event.amount
    return min(withdrawable, max(value, ZERO))


@project.on(Credit.TermsChanged)
def _(event: Any, changes: Changes, position: int) -> None:
    _touch(event, changes, **_terms({
        "end_date": event.end_date,
        "expected_consumption": event.expected_consumption,
        "minimal_consumption_logic": event.minimal_consumption_logic,
        "grace_coefficient": event.grace_coefficient,
        "apply_as_minimal_consumption": event.apply_as_minimal_consumption,
    }))


@project.on(Credit.ThresholdsChanged)
def _(event: Any, changes: Changes, position: int) -> None:
    _touch(event, changes, low_balance_thresholds=json.dumps(event.thresholds))


@project.on(Credit.ExpectedConsumptionRecalculated)
def _(event: Any, changes: Changes, position: int) -> None:
    _touch(event, changes, expected_consumption=event.expected_consumption)


@project.on(CustomerCredit.OfferingsChanged)
def _(event: Any, changes: Changes, position: int) -> None:
    _touch(event, changes, offerings=_offerings_json(changes, event.offering_ids))


@project.on(CustomerCredit.AllocationProtectionChanged)
def _(event: Any, changes: Changes, position: int) -> None:
    _touch(event, changes, protect_allocations=event.protect)


@project.on(ProjectCredit.Moved)
def _(event: Any, changes: Changes, position: int) -> None:
    found = changes.row(projects, event.project_id.hex)
    _touch(event, changes, project_uuid=found["uuid"], project_name=found["name"],
           project_slug=found["slug"])


@project.on(ProjectCredit.TerminationPolicyChanged)
def _(event: Any, changes: Changes, position: int) -> None:
    _touch(event, changes, mark_unused_credit_as_spent_on_project_termination=event.mark_unused)


@project.on(Credit.Event)
def _(event: Any, changes: Changes, position: int) -> None:
    """Any other credit event (allocation mirror, period marks) only moves the version."""
    _touch(event, changes)
