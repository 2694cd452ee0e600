"""The read side: selects over the read models, scoped to what a principal may see."""

from __future__ import annotations

import json
from collections import defaultdict, namedtuple
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_UP, Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    ScalarSelect,
    Select,
    Subquery,
    Table,
    exists,
    false,
    func,
    or_,
    select,
)

from ledger.access import Principal
from ledger.money import ZERO
from ledger.periods import Period
from ledger.settlement import minimal_consumption
from ledger.terms import Terms
from projections.credits import LISTED_COUNTER
from projections.tables import (
    LISTED,
    billing_periods,
    consumptions,
    counters,
    credit_months,
    customer_credits,
    customer_months,
    project_credits,
    project_months,
)

CENT = Decimal("0.01")


def project_credit_select(principal: Principal) -> Select[Any]:
    """Listed project credits (upstream hides those of organisations without a credit)."""
    query = select(project_credits).where(LISTED["project_credits"])
    if principal.sees_everything:
        return query
    return query.where(or_(
        project_credits.c.customer_uuid.in_(principal.customer_uuids()),
        project_credits.c.project_uuid.in_(principal.project_uuids()),
    ))


def customer_credit_select(principal: Principal) -> Select[Any]:
    query = select(customer_credits).where(LISTED["customer_credits"])
    if principal.sees_everything:
        return query
    return query.where(customer_credits.c.customer_uuid.in_(principal.customer_uuids()))


def listed_count(table: Table) -> Select[Any]:
    """Every listed row, from the counter the projector keeps: no scan per request."""
    return select(counters.c.value).where(counters.c.name == LISTED_COUNTER[table.name])


@dataclass(frozen=True)
class Offering:
    uuid: str
    name: str
    type: str


def offerings_from_json(text: str) -> list[Offering]:
    return [] if text == "[]" else [Offering(*item) for item in json.loads(text)]


def creditable_cost(conn: Connection, rows: list[Any], period: Period,
                    restrictions: dict[str, list[Offering]]) -> dict[str, Decimal]:
    """Eligible cost posted for each project this period, uncapped (reference §4.10).

    `restrictions` is keyed by project uuid: the offerings its organisation allows.
    """
    if not rows:
        return {}
    totals = conn.execute(
        select(project_months.c.project_uuid, project_months.c.offering_uuid,
               project_months.c.cost)
        .where(project_months.c.project_uuid.in_([row.project_uuid for row in rows]),
               project_months.c.period == str(period))).all()
    allowed = {uuid: {o.uuid for o in found} for uuid, found in restrictions.items()}
    cost: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for project_uuid, offering_uuid, amount in totals:
        if not allowed.get(project_uuid) or offering_uuid in allowed[project_uuid]:
            cost[project_uuid] += amount
    return cost


@dataclass(frozen=True)
class Month:
    """The months that derived fields look at, relative to today."""

    current: Period
    last: Period

    @classmethod
    def of(cls, today: date) -> Month:
        current = Period.of(today)
        return cls(current, current.previous())


def terms_of(row: Any) -> Terms:
    return Terms(
        end_date=row.end_date,
        expected_consumption=row.expected_consumption,
        minimal_consumption_logic=row.minimal_consumption_logic,
        grace_coefficient=Decimal(row.grace_coefficient),
        apply_as_minimal_consumption=row.apply_as_minimal_consumption,
    )


def with_organisation_figures(rows: Subquery, today: date) -> Select[Any]:
    """Project credit rows (a page, or one credit) with what their views need from
    elsewhere: the organisation credit's figures, joined by key, and whether the
    organisation has usage last month and this month and what the credit drew last month.
    Applied around a page, so only the page's rows are looked up."""
    month = Month.of(today)
    return select(
        rows,
        _organisation(customer_credits.c.value, rows.c.customer_uuid)
        .label("organisation_value"),
        _organisation(customer_credits.c.allocated_to_projects, rows.c.customer_uuid)
        .label("organisation_allocated"),
        _organisation(customer_credits.c.offerings, rows.c.customer_uuid)
        .label("organisation_offerings"),
        _has_usage(rows.c.customer_uuid, month.last).label("usage_last_month"),
        _has_usage(rows.c.customer_uuid, month.current).label("usage_this_month"),
        _drawn(rows.c.uuid, month.last).label("drawn_last_month"),
    )


def _organisation(column: ColumnElement[Any], customer_uuid: ColumnElement[str]) -> Any:
    """A figure of the organisation's live credit, looked up by key for each row: a
    subquery per row is an index probe whatever the planner's statistics say, where a join
    was hashed against every organisation credit before ANALYZE (issue 18)."""
    return (select(column)
            .where(customer_credits.c.customer_uuid == customer_uuid,
                   customer_credits.c.deleted == false())
            .limit(1).scalar_subquery())


def _has_usage(customer_uuid: ColumnElement[str], period: Period) -> ColumnElement[bool]:
    """Upstream's "an invoice exists": the organisation has live items in the period."""
    return exists().where(customer_months.c.customer_uuid == customer_uuid,
                          customer_months.c.period == str(period),
                          customer_months.c.item_count > 0)


def _drawn(credit_uuid: ColumnElement[str], period: Period) -> ScalarSelect[Any]:
    """What consumption drew from the credit in the period, net of reversals."""
    return (select(credit_months.c.drawn)
            .where(credit_months.c.credit_uuid == credit_uuid,
                   credit_months.c.period == str(period)).scalar_subquery())


def project_credit_views(conn: Connection, rows: list[Any], today: date) -> list[dict[str, Any]]:
    """Rows of `with_organisation_figures` plus the fields upstream derives at read time
    (reference §4.10); only a page with usage this month costs one more lookup by key."""
    month = Month.of(today)
    restrictions = {row.project_uuid: offerings_from_json(row.organisation_offerings)
                    for row in rows if row.organisation_offerings is not None}
    cost_now = creditable_cost(conn, [row for row in rows if row.usage_this_month],
                               month.current, restrictions)
    views = []
    for row in rows:
        customer_credit = row.organisation_value if row.organisation_value is not None else ZERO
        spendable = min(row.value, customer_credit)
        views.append({
            "row": row,
            "customer_credit": customer_credit,
            "allocated_customer_credit": row.organisation_allocated,
            "consumption_last_month": ((row.drawn_last_month or ZERO)
                                       if row.usage_last_month else None),
            "creditable_cost_this_month": (cost_now.get(row.project_uuid, ZERO)
                                           if row.usage_this_month else None),
            "spendable_value": spendable,
            "is_limited_by_organization_credit": spendable < row.value,
            "offerings": restrictions.get(row.project_uuid, []),
            "minimal_consumption": minimal_consumption(terms_of(row), today),
        })
    return views


def with_month_figures(rows: Subquery, today: date) -> Select[Any]:
    """Organisation credit rows (a page, or one credit) with whether the organisation has
    usage last month and what the credit drew then: looked up for those rows only."""
    month = Month.of(today)
    return select(rows, _has_usage(rows.c.customer_uuid, month.last).label("usage_last_month"),
                  _drawn(rows.c.uuid, month.last).label("drawn_last_month"))


def customer_credit_views(rows: list[Any], today: date) -> list[dict[str, Any]]:
    """Rows of `with_month_figures` plus the fields upstream derives at read time."""
    return [{
        "row": row,
        "allocated_to_projects": row.allocated_to_projects,
        "consumption_last_month": ((row.drawn_last_month or ZERO)
                                   if row.usage_last_month else None),
        "offerings": offerings_from_json(row.offerings),
        "minimal_consumption": minimal_consumption(terms_of(row), today),
    } for row in rows]


def monthly_consumption(conn: Connection, credit_uuid: str) -> list[tuple[str, Decimal]]:
    """What consumption drew from an organisation credit, per billing period, ascending.

    Priced as upstream prices compensation items: each item's draw is rounded to the cent
    away from zero (`quantize_price`, ROUND_UP), then the month's items are summed.
    """
    rows = conn.execute(
        select(consumptions.c.period, consumptions.c.drawn_from_project_credit,
               consumptions.c.drawn_from_customer_credit)
        .where(consumptions.c.customer_credit_uuid == credit_uuid,
               consumptions.c.reversed == false())
        .order_by(consumptions.c.period)
    ).all()
    months: dict[str, Decimal] = {}
    for period, from_project, from_customer in rows:
        price = (from_project + from_customer).quantize(CENT, rounding=ROUND_UP)
        months[period] = months.get(period, Decimal("0.00")) + price
    return list(months.items())


def open_period_items(conn: Connection, customer_uuid: str) -> tuple[Period, list[str]] | None:
    """The organisation's latest open billing period with live items, and those items."""
    closed = select(billing_periods.c.period).where(billing_periods.c.closed)
    latest = conn.execute(
        select(func.max(consumptions.c.period))
        .where(consumptions.c.customer_uuid == customer_uuid,
               consumptions.c.reversed == false(), consumptions.c.period.not_in(closed))
    ).scalar()
    if latest is None:
        return None
    item_ids = conn.execute(
        select(consumptions.c.item_id)
        .where(consumptions.c.customer_uuid == customer_uuid,
               consumptions.c.period == latest, consumptions.c.reversed == false())
        .order_by(consumptions.c.item_id)).scalars().all()
    return Period.parse(latest), list(item_ids)


def plain_rows(result: CursorResult[Any]) -> list[Any]:
    """The result's rows as named tuples of the same columns.

    Rendering reads each row's fields by name, twenty and more per row: on SQLAlchemy's
    Row that is a Python-level `__getattr__`, about 0.6 µs a field, where a named
    tuple's field is read in C. A hundred-row page read its rows for 3 ms (issue 18).
    The rows are fetched in one call: iterating the result fetches them one at a time,
    each through the driver's and SQLAlchemy's Python (7 calls a row more)."""
    make = _row_type(tuple(result.keys()))._make
    return [make(row) for row in result.all()]


@lru_cache(maxsize=256)
def _row_type(fields: tuple[str, ...]) -> Any:
    return namedtuple("ReadRow", fields)  # type: ignore[misc]
