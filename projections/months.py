"""An organisation's months in one answer: what the console's chart and month table draw.

Each month is the organisation credit's row of the month's reconciliation (opening, a
column per movement kind, closing; projections/reconciliation.py's attribution and
columns), with each project credit's balance at the month's end beside it. A month's end is
the first instant of the next month, what `?as_of=` answers there; for the current month
that instant is still to come, so its end is today's balance.

Two grouped queries answer any number of months and credits: the last version of each
credit in each month (a month is a bucket of `created`), and the organisation credit's
movements summed per month and kind. A chart of a year stays one request, however many
projects the organisation has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, case, func, select, type_coerce

from ledger.money import ZERO
from ledger.periods import Period
from projections.reconciliation import Figures, column_of, instant, iso_utc
from projections.tables import (
    billing_periods,
    credit_transactions,
    credit_versions,
    project_credits,
    projects,
)

v = credit_versions
tx = credit_transactions


@dataclass
class ProjectLine:
    """A project credit's balance at each month's end, as the wire shows money (None: it
    did not exist yet)."""

    uuid: str
    project_uuid: str
    project_name: str
    month_ends: list[str | None] = field(default_factory=list)


@dataclass
class Months:
    """The months from first to last, oldest first."""

    periods: list[Period]
    closed: list[bool]
    organisation: list[Figures]
    projects: list[ProjectLine]

    def as_dict(self, money: Any) -> dict[str, Any]:
        return {
            "months": [{"month": str(period), "closed": closed,
                        "opening_at": iso_utc(instant(period)),
                        "closing_at": iso_utc(instant(period.next())),
                        **figures.as_dict(money)}
                       for period, closed, figures in zip(
                           self.periods, self.closed, self.organisation, strict=True)],
            "project_credits": [{
                "uuid": line.uuid, "project_uuid": line.project_uuid,
                "project_name": line.project_name,
                "month_ends": line.month_ends}
                for line in self.projects],
        }


def last_months(today_period: Period, count: int) -> list[Period]:
    """`count` months ending with `today_period`, oldest first."""
    found = [today_period]
    while len(found) < count:
        found.insert(0, found[0].previous())
    return found


def months(conn: Connection, credit_uuid: str, customer_uuid: str,
           periods: list[Period]) -> Months:
    """The organisation credit's months and its projects' month-end balances."""
    edges = [instant(period) for period in periods] + [instant(periods[-1].next())]
    ends = _units_at_edges(conn, customer_uuid, edges)
    own = ends.pop(credit_uuid, [None] * len(edges))
    organisation = [Figures(opening=_decimal(own[i]), closing=_decimal(own[i + 1]))
                    for i in range(len(periods))]
    for bucket, event_type, signed, amount in conn.execute(_movements(credit_uuid, edges)):
        organisation[bucket - 1].movements[column_of(event_type, Decimal(signed))] += amount
    closed = {period: is_closed for period, is_closed in conn.execute(
        select(billing_periods.c.period, billing_periods.c.closed))}
    lines = [ProjectLine(uuid, project_uuid, name or "",
                         [None if units is None else units_text(units)
                          for units in ends[uuid][1:]])
             for uuid, project_uuid, name in conn.execute(
                 select(project_credits.c.uuid, project_credits.c.project_uuid,
                        projects.c.name)
                 .join(projects, projects.c.uuid == project_credits.c.project_uuid)
                 .where(project_credits.c.customer_uuid == customer_uuid)) if uuid in ends]
    lines.sort(key=lambda line: (line.project_name, line.uuid))
    return Months(periods, [bool(closed.get(str(period))) for period in periods],
                  organisation, lines)


def _bucket(column: Any, edges: list[datetime]) -> Any:
    """0 for at or before the first edge, i for after edge i-1 and at or before edge i."""
    return case(*((column <= edge, i) for i, edge in enumerate(edges)))


def _units_at_edges(conn: Connection, customer_uuid: str,
                    edges: list[datetime]) -> dict[str, list[int | None]]:
    """Per credit of the customer, its balance at each edge (the value of its latest
    version at or before it; None before its first), in stored units of 10^-5: a year of
    a thousand projects is thousands of values, read without a Decimal each."""
    bucket = _bucket(v.c.created, edges).label("bucket")
    last = (select(v.c.uuid, bucket, func.max(v.c.version).label("version"))
            .where(v.c.is_org.in_((True, False)),  # the by-customer index leads with is_org
                   v.c.customer_uuid == customer_uuid, v.c.created <= edges[-1])
            .group_by(v.c.uuid, bucket).subquery())
    query = (select(last.c.uuid, last.c.bucket, type_coerce(v.c.value, BigInteger))
             .join(v, and_(v.c.uuid == last.c.uuid, v.c.version == last.c.version)))
    found: dict[str, dict[int, int]] = {}
    for uuid, at, units in conn.execute(query):
        found.setdefault(uuid, {})[at] = units
    return {uuid: _carried(by_bucket, len(edges)) for uuid, by_bucket in found.items()}


def _carried(by_bucket: dict[int, int], edges: int) -> list[int | None]:
    """Each edge's balance: the last bucket's value carried forward to the next."""
    balances: list[int | None] = []
    current = None
    for edge in range(edges):
        current = by_bucket.get(edge, current)
        balances.append(current)
    return balances


def _decimal(units: int | None) -> Decimal:
    """A balance as the reconciliation shows it: 0 before the credit existed."""
    return ZERO if units is None else Decimal(units).scaleb(-5)


def units_text(units: int) -> str:
    """Stored units as the wire shows money ('300.00000'), as format_money would."""
    whole, fraction = divmod(abs(units), 100000)
    return f"{'-' if units < 0 else ''}{whole}.{fraction:05d}"


def _movements(credit_uuid: str, edges: list[datetime]) -> Any:
    """(month bucket, event type, sign, sum) of the credit's transactions in the months."""
    bucket = _bucket(tx.c.created, edges)
    sign = case((tx.c.amount < 0, -1), else_=1)
    return (select(bucket, tx.c.event_type, sign, func.sum(tx.c.amount))
            .where(tx.c.credit_uuid == credit_uuid, tx.c.created > edges[0],
                   tx.c.created <= edges[-1])
            .group_by(bucket, tx.c.event_type, sign))
