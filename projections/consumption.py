"""Read model of consumption items, their monthly totals and billing periods.

The monthly totals serve the fields upstream derives per month: what each credit drew
(`consumption_last_month`), what each project's items cost per offering
(`creditable_cost_this_month`) and whether an organisation had any item (upstream's
"an invoice exists"). They are counters, kept net of reversals.
"""

from __future__ import annotations

from typing import Any

from ledger.consumption import BillingCalendar, ConsumptionItem
from projections.changes import Changes, Row
from projections.dispatch import Dispatch
from projections.tables import (
    billing_periods,
    consumptions,
    credit_months,
    customer_months,
    project_months,
)

project = Dispatch()


@project.on(ConsumptionItem.Recorded)
def _recorded(event: Any, changes: Changes, position: int) -> None:
    row = dict(
        item_id=event.item_id, project_uuid=event.project_id.hex,
        customer_uuid=event.customer_id.hex,
        offering_uuid=event.offering_id.hex if event.offering_id else None,
        period=event.period, amount=event.amount, **_coverage(event),
        reversed=False, reversed_at=None, reversed_by=None, created=event.timestamp)
    changes.insert(consumptions, row)
    _count(changes, row, 1)


@project.on(ConsumptionItem.Reversed)
def _reversed(event: Any, changes: Changes, position: int) -> None:
    row = changes.update(consumptions, (event.item_id,), reversed=True,
                         reversed_at=event.timestamp, reversed_by=event.actor)
    _count(changes, row, -1)


@project.on(ConsumptionItem.CoverageChanged)
def _coverage_changed(event: Any, changes: Changes, position: int) -> None:
    """Staff cleared or re-applied the item's period: the credits' month totals follow."""
    old = changes.row(consumptions, event.item_id)
    _count_drawn(changes, old, -1)
    new = changes.update(consumptions, (event.item_id,), **_coverage(event))
    _count_drawn(changes, new, 1)


def _coverage(event: Any) -> dict[str, Any]:
    return dict(
        drawn_from_project_credit=event.drawn_from_project_credit,
        drawn_from_customer_credit=event.drawn_from_customer_credit,
        uncovered=event.uncovered,
        project_credit_uuid=event.project_credit_id.hex if event.project_credit_id else None,
        customer_credit_uuid=event.customer_credit_id.hex if event.customer_credit_id else None)


def _count_drawn(changes: Changes, item: Row, sign: int) -> None:
    drawn = item["drawn_from_project_credit"] + item["drawn_from_customer_credit"]
    for credit_uuid in {item["project_credit_uuid"], item["customer_credit_uuid"]} - {None}:
        changes.add(credit_months, credit_uuid, item["period"], drawn=sign * drawn)


def _count(changes: Changes, item: Row, sign: int) -> None:
    period = item["period"]
    _count_drawn(changes, item, sign)
    changes.add(project_months, item["project_uuid"], period, item["offering_uuid"] or "",
                cost=sign * item["amount"])
    changes.add(customer_months, item["customer_uuid"], period, item_count=sign)


@project.on(BillingCalendar.PeriodClosed, BillingCalendar.PeriodReopened)
def _calendar(event: Any, changes: Changes, position: int) -> None:
    closed = isinstance(event, BillingCalendar.PeriodClosed)
    if changes.get(billing_periods, event.period) is None:
        changes.insert(billing_periods, dict(period=event.period, closed=closed,
                                             modified=event.timestamp))
    else:
        changes.update(billing_periods, (event.period,), closed=closed, modified=event.timestamp)
