"""Read model of credit versions: the credit's state after each event of its stream.

`?as_of=`, month-end balances and statements read the latest version at or before a
moment instead of replaying streams. The row copies the credit's live row right after
the credits projection applied the event, keyed by the event's version and stamped with
its timestamp. An organisation credit's `allocated_to_projects` is the aggregate's own
mirror instead (moved by AllocationChanged and drawn lines): the live row moves with the
project credits' events, which may come after the organisation's in the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.money import ZERO
from projections.changes import Changes, Key
from projections.credits import table_of
from projections.dispatch import Dispatch
from projections.tables import credit_allocations, credit_versions, customer_credits

project = Dispatch()
STATE = ("customer_uuid", "value", "deleted", "end_date", "expected_consumption",
         "minimal_consumption_logic", "grace_coefficient", "apply_as_minimal_consumption",
         "low_balance_thresholds")


@project.on(CustomerCredit.Event, ProjectCredit.Event)
def _version(event: Any, changes: Changes, position: int) -> None:
    table = table_of(event)
    row = changes.row(table, event.originator_id.hex)
    is_org = table is customer_credits
    changes.insert(credit_versions, dict(
        uuid=row["uuid"], version=event.originator_version, created=event.timestamp,
        is_org=is_org, credit_created=row["created"],
        project_uuid=None if is_org else row["project_uuid"],
        mark_unused_credit_as_spent_on_project_termination=None if is_org else row[
            "mark_unused_credit_as_spent_on_project_termination"],
        allocated_to_projects=_allocated(event, changes) if is_org else None,
        offerings=row["offerings"] if is_org else None,
        withdrawable_balance=row["withdrawable_balance"] if is_org else None,
        protect_allocations=row["protect_allocations"] if is_org else None,
        **{name: row[name] for name in STATE}))


def _allocated(event: Any, changes: Changes) -> Decimal:
    """The previous version's allocation plus what this event moved in the mirror."""
    uuid = event.originator_id.hex
    version = event.originator_version
    previous = changes.get(credit_versions, uuid, version - 1) if version > 1 else None
    total: Decimal = previous["allocated_to_projects"] if previous else ZERO
    if isinstance(event, CustomerCredit.AllocationChanged):
        allocation: Any = event
        old = _move_mirror(changes, uuid, allocation.project_credit_id.hex, allocation.value)
        return total - old + (allocation.value or ZERO)
    if isinstance(event, Credit.LinesChanged):
        for line in event.lines:
            if line.get("project_credit_id") is not None:
                key = line["project_credit_id"].hex
                mirror = changes.row(credit_allocations, uuid, key)
                _move_mirror(changes, uuid, key, mirror["value"] + line["amount"])
                total += line["amount"]
    return total


def _move_mirror(changes: Changes, uuid: str, project_credit_uuid: str,
                 value: Decimal | None) -> Decimal:
    """Set (None: remove) one allocation of the mirror; returns the old value."""
    key = (uuid, project_credit_uuid)
    old = changes.get(credit_allocations, *key)
    old_value: Decimal = old["value"] if old else ZERO  # before the update changes the row
    if value is None:
        if old is not None:
            changes.delete(credit_allocations, *key)
    elif old is None:
        changes.insert(credit_allocations, dict(credit_uuid=uuid,
                                                project_credit_uuid=project_credit_uuid,
                                                value=value))
    else:
        changes.update(credit_allocations, key, value=value)
    return old_value


def rows_to_prefetch(event: Any) -> Iterator[tuple[Any, Key]]:
    """The version and mirror rows an organisation credit's event reads."""
    if not isinstance(event, CustomerCredit.Event):
        return
    uuid = event.originator_id.hex
    if event.originator_version > 1:  # a stream's first event has no previous version
        yield credit_versions, (uuid, event.originator_version - 1)
    project_credit_id = getattr(event, "project_credit_id", None)
    if project_credit_id is not None:
        yield credit_allocations, (uuid, project_credit_id.hex)
    for line in getattr(event, "lines", None) or ():
        if line.get("project_credit_id") is not None:
            yield credit_allocations, (uuid, line["project_credit_id"].hex)
