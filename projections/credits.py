"""Read model of organisation and project credits: balances, terms, offerings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, delete, insert, update

from ledger.credits import Credit, CustomerCredit, ProjectCredit
from projections.dispatch import Dispatch
from projections.tables import customer_credit_offerings, customer_credits, project_credits


def table_of(event: Any) -> Table:
    return customer_credits if isinstance(event, CustomerCredit.Event) else project_credits


project = Dispatch()


def _terms(terms: dict[str, Any]) -> dict[str, Any]:
    return {**terms, "grace_coefficient": int(terms["grace_coefficient"])}


def _touch(event: Any, conn: Connection, **values: Any) -> None:
    """Every credit event moves the row's version and modified time."""
    table = table_of(event)
    conn.execute(update(table).where(table.c.uuid == event.originator_id.hex).values(
        version=event.originator_version, modified=event.timestamp, **values))


def _created(event: Any) -> dict[str, Any]:
    return dict(uuid=event.originator_id.hex, value=event.value, deleted=False,
                version=event.originator_version, created=event.timestamp,
                modified=event.timestamp, **_terms(event.terms))


@project.on(CustomerCredit.Created)
def _(event: Any, conn: Connection, position: int) -> None:
    conn.execute(insert(customer_credits), dict(
        customer_uuid=event.customer_id.hex, **_created(event)))
    _set_offerings(conn, event.originator_id.hex, event.offering_ids)


@project.on(ProjectCredit.Created)
def _(event: Any, conn: Connection, position: int) -> None:
    conn.execute(insert(project_credits), dict(
        project_uuid=event.project_id.hex, customer_uuid=event.customer_id.hex,
        mark_unused_credit_as_spent_on_project_termination=(
            event.mark_unused_credit_as_spent_on_project_termination),
        **_created(event)))


@project.on(Credit.BalanceChanged)
def _(event: Any, conn: Connection, position: int) -> None:
    table = table_of(event)
    extra: dict[str, Any] = {}
    if isinstance(event, Credit.Deleted):
        extra["deleted"] = True
    if isinstance(event, Credit.SettlementReversed) and event.expected_consumption is not None:
        extra["expected_consumption"] = event.expected_consumption
    _touch(event, conn, value=table.c.value + event.amount, **extra)


@project.on(Credit.TermsChanged)
def _(event: Any, conn: Connection, position: int) -> None:
    _touch(event, conn, **_terms({
        "end_date": event.end_date,
        "expected_consumption": event.expected_consumption,
        "minimal_consumption_logic": event.minimal_consumption_logic,
        "grace_coefficient": event.grace_coefficient,
        "apply_as_minimal_consumption": event.apply_as_minimal_consumption,
    }))


@project.on(Credit.ExpectedConsumptionRecalculated)
def _(event: Any, conn: Connection, position: int) -> None:
    _touch(event, conn, expected_consumption=event.expected_consumption)


@project.on(CustomerCredit.OfferingsChanged)
def _(event: Any, conn: Connection, position: int) -> None:
    _touch(event, conn)
    _set_offerings(conn, event.originator_id.hex, event.offering_ids)


@project.on(ProjectCredit.Moved)
def _(event: Any, conn: Connection, position: int) -> None:
    _touch(event, conn, project_uuid=event.project_id.hex)


@project.on(ProjectCredit.TerminationPolicyChanged)
def _(event: Any, conn: Connection, position: int) -> None:
    _touch(event, conn, mark_unused_credit_as_spent_on_project_termination=event.mark_unused)


@project.on(Credit.Event)
def _(event: Any, conn: Connection, position: int) -> None:
    """Any other credit event (allocation mirror, period marks) only moves the version."""
    _touch(event, conn)


def _set_offerings(conn: Connection, credit_uuid: str, offering_ids: list[Any]) -> None:
    table = customer_credit_offerings
    conn.execute(delete(table).where(table.c.credit_uuid == credit_uuid))
    for position, offering_id in enumerate(offering_ids):
        conn.execute(insert(table), dict(
            credit_uuid=credit_uuid, offering_uuid=offering_id.hex, position=position))
