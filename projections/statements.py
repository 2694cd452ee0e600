"""An organisation credit's monthly statement, for its owners.

Opening and closing are the organisation credit's balances at the first instant of the
month and of the next one (as in the reconciliation); the lines are every transaction of
the organisation credit and of its customer's project credits recorded in between, in
ledger order, each with the balance after it on its own credit. Project credits are
earmarks inside the organisation credit, so their lines explain, not add to, its balance;
their own opening and closing are listed beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, false, or_, select

from ledger.money import ZERO
from ledger.periods import Period
from projections.as_of import states_at
from projections.reconciliation import COLUMNS, column_of, instant, iso_utc
from projections.tables import credit_transactions, credit_versions

tx = credit_transactions
v = credit_versions
SCOPES = ("organisation", "project")


@dataclass
class Statement:
    credit_uuid: str
    customer_uuid: str
    period: Period
    opening: Decimal
    closing: Decimal
    lines: list[dict[str, Any]]
    project_credits: list[dict[str, Any]]

    @property
    def ties_out(self) -> bool:
        own = sum((line["amount"] for line in self.lines if line["credit"] == "organisation"),
                  ZERO)
        return self.opening + own == self.closing

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per scope (organisation, project), the lines summed by reconciliation column."""
        found = {scope: dict.fromkeys(COLUMNS, ZERO) for scope in SCOPES}
        for line in self.lines:
            found[line["credit"]][line["column"]] += line["amount"]
        return found

    def as_dict(self) -> dict[str, Any]:
        return {"credit_uuid": self.credit_uuid, "customer_uuid": self.customer_uuid,
                "period": str(self.period), "opening_at": instant(self.period).isoformat(),
                "closing_at": instant(self.period.next()).isoformat(),
                "opening": self.opening, "lines": self.lines, "closing": self.closing,
                "ties_out": self.ties_out, "totals": self.totals(),
                "project_credits": self.project_credits}


def statement(conn: Connection, credit_uuid: str, customer_uuid: str,
              period: Period) -> Statement:
    start, end = instant(period), instant(period.next())
    own = [v.c.uuid == credit_uuid]
    projects = [v.c.customer_uuid == customer_uuid, v.c.is_org == false()]
    opening, closing = (_values(conn, moment, own).get(credit_uuid, ZERO)
                        for moment in (start, end))
    return Statement(credit_uuid, customer_uuid, period, opening, closing,
                     _lines(conn, credit_uuid, customer_uuid, start, end),
                     _project_credits(conn, projects, start, end))


def _values(conn: Connection, moment: Any, where: list[Any]) -> dict[str, Decimal]:
    return {state.uuid: state.value for state in states_at(conn, moment, *where)}


def _lines(conn: Connection, credit_uuid: str, customer_uuid: str, start: Any,
           end: Any) -> list[dict[str, Any]]:
    query = (select(tx).where(tx.c.customer_uuid == customer_uuid,
                              or_(tx.c.credit_uuid == credit_uuid,
                                  tx.c.project_credit_uuid.is_not(None)),
                              tx.c.created > start, tx.c.created <= end)
             .order_by(tx.c.position))
    return [{
        "date": iso_utc(row.created),
        "type": row.transaction_type,
        "column": column_of(row.event_type, row.amount),
        "credit": "organisation" if row.credit_uuid else "project",
        "credit_uuid": row.credit_uuid or row.project_credit_uuid,
        "project_uuid": row.project_uuid,
        "project_name": row.project_name,
        "item_id": row.item_id,
        "billing_period": str(Period.of(row.billing_period)) if row.billing_period else None,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "description": row.comment,
    } for row in conn.execute(query)]


def _project_credits(conn: Connection, where: list[Any], start: Any,
                     end: Any) -> list[dict[str, Any]]:
    """Each project credit of the customer that existed in the month, opening and closing."""
    before = {state.uuid: state for state in states_at(conn, start, *where)}
    found = []
    for state in states_at(conn, end, *where):
        earlier = before.get(state.uuid)
        if earlier is not None and earlier.deleted:
            continue
        found.append({"uuid": state.uuid, "project_uuid": state.project_uuid,
                      "project_name": state.project_name,
                      "opening": earlier.value if earlier is not None else ZERO,
                      "closing": state.value})
    return sorted(found, key=lambda item: (item["project_name"] or "", item["uuid"]))
