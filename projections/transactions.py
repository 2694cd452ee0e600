"""Read model of credit transactions: one row per balance change, typed as upstream.

Names are copied onto the row when it is written, so attribution survives deletion of
the credit, and the row's uuid derives from the event, so a rebuild gives the same rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.periods import Period
from projections.changes import Changes
from projections.dispatch import Dispatch
from projections.tables import (
    consumptions,
    credit_transactions,
    customer_credits,
    project_credits,
    projects,
)

TYPES: list[tuple[type, str]] = [
    (Credit.Granted, "staff_grant"),
    (Credit.Drawn, "compensation"),
    (Credit.DrawReversed, "rollback"),
    (Credit.FloorCharged, "minimal_draw"),
    (Credit.Expired, "expiry"),
    (Credit.SettlementReversed, "rollback"),
    (Credit.WrittenOff, "adjustment"),
    (ProjectCredit.Released, "adjustment"),
    (Credit.Deleted, "adjustment"),
]

DISPLAY = {
    "staff_grant": "Staff grant",
    "compensation": "Compensation",
    "minimal_draw": "Minimal consumption draw",
    "affiliate_fee": "Affiliate fee",
    "transfer_in": "Transfer in",
    "transfer_out": "Transfer out",
    "payout": "Payout",
    "expiry": "Expiry",
    "rollback": "Rollback",
    "adjustment": "Adjustment",
    "withdrawable_adjustment": "Withdrawable adjustment",
}

project = Dispatch()


def transaction_type(event: Credit.BalanceChanged) -> str:
    return next(name for cls, name in TYPES if isinstance(event, cls))


def comment_of(event: Any) -> str:
    if isinstance(event, Credit.Granted):
        return str(event.comment)
    if isinstance(event, Credit.WrittenOff):
        return f"Written off: {event.reason}."
    if isinstance(event, ProjectCredit.Released):
        return "Project terminated: unused credit " + (
            "written off." if event.written_off else "returned to the organisation pool.")
    if isinstance(event, Credit.Deleted):
        return "Credit deleted."
    if isinstance(event, Credit.Drawn | Credit.DrawReversed):
        return f"Consumption item {event.item_id}."
    return ""


@project.on(CustomerCredit.Created, ProjectCredit.Created)
def _created(event: Any, changes: Changes, position: int) -> None:
    """A credit created with a value is a grant of that value (upstream: delta on create)."""
    if event.value != 0:
        _record(event, changes, position, event.value, "staff_grant", "", None)


@project.on(Credit.BalanceChanged)
def _balance_changed(event: Any, changes: Changes, position: int) -> None:
    if event.amount != 0:
        _record(event, changes, position, event.amount, transaction_type(event),
                comment_of(event), event.period)


def _record(event: Any, changes: Changes, position: int, amount: Decimal, kind: str,
            comment: str, period: str | None) -> None:
    """One row; the credits projection has already applied the event to the credit's row."""
    is_org = isinstance(event, CustomerCredit.Event)
    row = changes.row(customer_credits if is_org else project_credits, event.originator_id.hex)
    project_uuid = _project_of(event, changes) or (None if is_org else row["project_uuid"])
    found = changes.get(projects, project_uuid) if project_uuid else None
    changes.insert(credit_transactions, dict(
        uuid=uuid5(NAMESPACE_URL, f"{event.originator_id}/{event.originator_version}").hex,
        position=position, created=event.timestamp, amount=amount,
        transaction_type=kind, comment=comment,
        credit_uuid=row["uuid"] if is_org else None,
        project_credit_uuid=None if is_org else row["uuid"],
        customer_uuid=row["customer_uuid"], customer_name=row["customer_name"],
        project_uuid=project_uuid, project_name=found["name"] if found else None,
        billing_period=Period.parse(period).first_day if period else None,
        balance_after=row["value"],
        actor=event.actor, event_type=type(event).__qualname__))


def _project_of(event: Any, changes: Changes) -> str | None:
    """The project a movement is for; a reversal is for its consumption item's project."""
    project_id = getattr(event, "project_id", None)
    if project_id is not None:
        return str(project_id.hex)
    if isinstance(event, Credit.DrawReversed):
        item = changes.get(consumptions, event.item_id)
        return str(item["project_uuid"]) if item else None
    return None
