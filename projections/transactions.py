"""Read model of credit transactions: one row per balance change, typed as upstream.

Names are copied onto the row when it is written, so attribution survives deletion of
the credit, and the row's uuid derives from the event, so a rebuild gives the same rows.
An ItemsDrawn event gives one row per item line (uuid from the event and the item id).
Rows are ordered by ``position``: the event's notification id times LINE_SLOTS plus the
line's index, so the lines of one event keep their order.
"""

from __future__ import annotations

from dataclasses import dataclass
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

LINE_SLOTS = 1 << 20

TYPES: list[tuple[type, str]] = [
    (Credit.Granted, "staff_grant"),
    (CustomerCredit.WithdrawableAdjusted, "withdrawable_adjustment"),
    (Credit.ItemsDrawn, "compensation"),
    (Credit.DrawsRolledBack, "rollback"),
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
    """The transaction's comment: the grant's reason as given, or what the ledger did."""
    if isinstance(event, CustomerCredit.Created | ProjectCredit.Created):
        return str(getattr(event, "comment", ""))  # older Created events have none
    if isinstance(event, Credit.Granted | CustomerCredit.WithdrawableAdjusted):
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
        _record(event, changes, position, event.value, "staff_grant", comment_of(event), None)


@project.on(Credit.LinesChanged)
def _items_drawn(event: Any, changes: Changes, position: int) -> None:
    names = {uuid: name for line in event.lines
             if (name := _name_of(changes, uuid := line["project_id"].hex)) is not None}
    for row in items_drawn_rows(event, position, _credit_of(event, changes), names):
        changes.insert(credit_transactions, row)


@project.on(Credit.BalanceChanged)
def _balance_changed(event: Any, changes: Changes, position: int) -> None:
    if event.amount != 0:
        _record(event, changes, position, event.amount, transaction_type(event),
                comment_of(event), event.period)


@dataclass(frozen=True)
class CreditRow:
    """What a transaction row copies from its credit: the balance is after the event."""

    is_org: bool
    uuid: str
    customer_uuid: str
    customer_name: str | None
    project_uuid: str | None
    value: Decimal


def _credit_of(event: Any, changes: Changes) -> CreditRow:
    """The credit's row: the credits projection has already applied the event to it."""
    is_org = isinstance(event, CustomerCredit.Event)
    row = changes.row(customer_credits if is_org else project_credits, event.originator_id.hex)
    return CreditRow(is_org, row["uuid"], row["customer_uuid"], row["customer_name"],
                     None if is_org else row["project_uuid"], row["value"])


def _name_of(changes: Changes, project_uuid: str | None) -> str | None:
    found = changes.get(projects, project_uuid) if project_uuid else None
    return str(found["name"]) if found else None


def _record(event: Any, changes: Changes, position: int, amount: Decimal, kind: str,
            comment: str, period: str | None) -> None:
    credit = _credit_of(event, changes)
    project_uuid = _project_of(event, changes) or credit.project_uuid
    project_name = _name_of(changes, project_uuid)
    changes.insert(credit_transactions, transaction_row(
        event, credit, uuid=transaction_uuid(event), position=position * LINE_SLOTS,
        amount=amount, transaction_type=kind, comment=comment, project_uuid=project_uuid,
        project_name=project_name, billing_period=Period.parse(period).first_day if period
        else None, item_id=getattr(event, "item_id", None), balance_after=credit.value))


def items_drawn_rows(event: Any, position: int, credit: CreditRow,
                     project_names: dict[str, str]) -> list[dict[str, Any]]:
    """One row per item line (compensation, or rollback when cleared), in line order, each
    with its running balance.

    The credit row holds the balance after the whole event; the lines lead up to it.
    """
    assert len(event.lines) < LINE_SLOTS
    balance = credit.value - event.amount
    period = Period.parse(event.period).first_day
    kind = transaction_type(event)
    found = []
    for index, line in enumerate(event.lines):
        balance += line["amount"]
        project_uuid = line["project_id"].hex
        found.append(transaction_row(
            event, credit, uuid=transaction_uuid(event, line["item_id"]),
            position=position * LINE_SLOTS + index, amount=line["amount"],
            transaction_type=kind, comment=f"Consumption item {line['item_id']}.",
            project_uuid=project_uuid, project_name=project_names.get(project_uuid),
            billing_period=period, item_id=line["item_id"], balance_after=balance))
    return found


def transaction_row(event: Any, credit: CreditRow, **values: Any) -> dict[str, Any]:
    """The columns every row fills the same way, plus the row's own ``values``."""
    return dict(
        created=event.timestamp, credit_uuid=credit.uuid if credit.is_org else None,
        project_credit_uuid=None if credit.is_org else credit.uuid,
        customer_uuid=credit.customer_uuid, customer_name=credit.customer_name,
        actor=event.actor, event_type=type(event).__qualname__, **values)


def transaction_uuid(event: Any, item_id: str | None = None) -> str:
    """Derived from the event (and the item, for a line), so a rebuild gives the same rows."""
    key = f"{event.originator_id}/{event.originator_version}"
    return uuid5(NAMESPACE_URL, key if item_id is None else f"{key}/{item_id}").hex


def _project_of(event: Any, changes: Changes) -> str | None:
    """The project a movement is for; a reversal is for its consumption item's project."""
    project_id = getattr(event, "project_id", None)
    if project_id is not None:
        return str(project_id.hex)
    if isinstance(event, Credit.DrawReversed):
        item = changes.get(consumptions, event.item_id)
        return str(item["project_uuid"]) if item else None
    return None
