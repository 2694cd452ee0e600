"""Read model of consumption items and billing periods."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update

from ledger.consumption import BillingCalendar, ConsumptionItem
from projections.dispatch import Dispatch
from projections.tables import billing_periods, consumptions

project = Dispatch()


@project.on(ConsumptionItem.Recorded)
def _recorded(event: Any, conn: Connection, position: int) -> None:
    conn.execute(insert(consumptions), dict(
        item_id=event.item_id, project_uuid=event.project_id.hex,
        customer_uuid=event.customer_id.hex,
        offering_uuid=event.offering_id.hex if event.offering_id else None,
        period=event.period, amount=event.amount,
        drawn_from_project_credit=event.drawn_from_project_credit,
        drawn_from_customer_credit=event.drawn_from_customer_credit,
        uncovered=event.uncovered,
        project_credit_uuid=event.project_credit_id.hex if event.project_credit_id else None,
        customer_credit_uuid=event.customer_credit_id.hex if event.customer_credit_id else None,
        reversed=False, created=event.timestamp))


@project.on(ConsumptionItem.Reversed)
def _reversed(event: Any, conn: Connection, position: int) -> None:
    conn.execute(update(consumptions).where(consumptions.c.item_id == event.item_id)
                 .values(reversed=True))


@project.on(BillingCalendar.PeriodClosed, BillingCalendar.PeriodReopened)
def _calendar(event: Any, conn: Connection, position: int) -> None:
    closed = isinstance(event, BillingCalendar.PeriodClosed)
    changed = conn.execute(update(billing_periods)
                           .where(billing_periods.c.period == event.period)
                           .values(closed=closed, modified=event.timestamp))
    if changed.rowcount == 0:
        conn.execute(insert(billing_periods), dict(
            period=event.period, closed=closed, modified=event.timestamp))
