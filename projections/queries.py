"""The read side: selects over the read models, scoped to what a principal may see."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_UP, Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, false, func, or_, select

from ledger.access import Principal
from ledger.money import ZERO
from ledger.periods import Period
from ledger.settlement import minimal_consumption
from ledger.terms import Terms
from projections.tables import (
    Money,
    consumptions,
    customer_credit_offerings,
    customer_credits,
    customers,
    offerings,
    project_credits,
    projects,
)

org = customer_credits.alias("org")
CENT = Decimal("0.01")


def project_credit_select(principal: Principal) -> Select[Any]:
    """Live project credits whose organisation has a credit (upstream hides orphans)."""
    query = (
        select(project_credits,
               projects.c.name.label("project_name"), projects.c.slug.label("project_slug"),
               customers.c.name.label("customer_name"), customers.c.slug.label("customer_slug"),
               org.c.uuid.label("org_uuid"), org.c.value.label("customer_credit"))
        .join(projects, projects.c.uuid == project_credits.c.project_uuid)
        .join(customers, customers.c.uuid == project_credits.c.customer_uuid)
        .join(org, and_(org.c.customer_uuid == project_credits.c.customer_uuid,
                        org.c.deleted == false()))
        .where(project_credits.c.deleted == false())
    )
    if principal.sees_everything:
        return query
    return query.where(or_(
        project_credits.c.customer_uuid.in_(principal.customer_uuids()),
        project_credits.c.project_uuid.in_(principal.project_uuids()),
    ))


def customer_credit_select(principal: Principal) -> Select[Any]:
    query = (
        select(customer_credits,
               customers.c.name.label("customer_name"), customers.c.slug.label("customer_slug"))
        .join(customers, customers.c.uuid == customer_credits.c.customer_uuid)
        .where(customer_credits.c.deleted == false())
    )
    if principal.sees_everything:
        return query
    return query.where(customer_credits.c.customer_uuid.in_(principal.customer_uuids()))


def icontains(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    return func.lower(column).contains(text.lower(), autoescape=True)


@dataclass(frozen=True)
class Offering:
    uuid: str
    name: str
    type: str


def offerings_of(conn: Connection, credit_uuids: list[str]) -> dict[str, list[Offering]]:
    """Each organisation credit's offering restriction, in the order it was given."""
    link = customer_credit_offerings
    rows = conn.execute(
        select(link.c.credit_uuid, offerings.c.uuid, offerings.c.name, offerings.c.type)
        .join(offerings, offerings.c.uuid == link.c.offering_uuid)
        .where(link.c.credit_uuid.in_(credit_uuids)).order_by(link.c.position)
    ).all()
    found: dict[str, list[Offering]] = defaultdict(list)
    for row in rows:
        found[row.credit_uuid].append(Offering(row.uuid, row.name, row.type))
    return found


def allocated_by_customer(conn: Connection, customer_uuids: list[str]) -> dict[str, Decimal]:
    rows = conn.execute(
        select(project_credits.c.customer_uuid, func.sum(project_credits.c.value, type_=Money()))
        .where(project_credits.c.customer_uuid.in_(customer_uuids),
               project_credits.c.deleted == false())
        .group_by(project_credits.c.customer_uuid)
    ).all()
    return {row[0]: row[1] for row in rows}


def customers_with_items(conn: Connection, customer_uuids: list[str], period: Period) -> set[str]:
    """Customers with consumption posted for the period (upstream: an invoice exists)."""
    rows = conn.execute(
        select(consumptions.c.customer_uuid).distinct()
        .where(consumptions.c.customer_uuid.in_(customer_uuids),
               consumptions.c.period == str(period), consumptions.c.reversed == false())
    ).all()
    return {row[0] for row in rows}


def drawn_in_period(conn: Connection, key: ColumnElement[Any], keys: list[str],
                    period: Period) -> dict[str, Decimal]:
    """What consumption drew in the period, per project credit or per organisation credit."""
    drawn = consumptions.c.drawn_from_project_credit + consumptions.c.drawn_from_customer_credit
    rows = conn.execute(
        select(key, func.sum(drawn, type_=Money()))
        .where(key.in_(keys), consumptions.c.period == str(period),
               consumptions.c.reversed == false())
        .group_by(key)
    ).all()
    return {row[0]: row[1] for row in rows}


def creditable_cost(conn: Connection, rows: list[Any], period: Period,
                    restrictions: dict[str, list[Offering]]) -> dict[str, Decimal]:
    """Eligible cost posted for each project this period, uncapped (reference §4.10)."""
    totals = conn.execute(
        select(consumptions.c.project_uuid, consumptions.c.offering_uuid,
               func.sum(consumptions.c.amount, type_=Money()))
        .where(consumptions.c.project_uuid.in_([row.project_uuid for row in rows]),
               consumptions.c.period == str(period), consumptions.c.reversed == false())
        .group_by(consumptions.c.project_uuid, consumptions.c.offering_uuid)
    ).all()
    allowed = {row.project_uuid: {o.uuid for o in restrictions.get(row.org_uuid, [])}
               for row in rows}
    cost: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for project_uuid, offering_uuid, amount in totals:
        if not allowed[project_uuid] or offering_uuid in allowed[project_uuid]:
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


def project_credit_views(conn: Connection, rows: list[Any], today: date) -> list[dict[str, Any]]:
    """Rows plus the fields upstream derives at read time (reference §4.10)."""
    month = Month.of(today)
    customer_uuids = sorted({row.customer_uuid for row in rows})
    credit_uuids = [row.uuid for row in rows]
    allocated = allocated_by_customer(conn, customer_uuids)
    restrictions = offerings_of(conn, sorted({row.org_uuid for row in rows}))
    invoiced_last = customers_with_items(conn, customer_uuids, month.last)
    invoiced_now = customers_with_items(conn, customer_uuids, month.current)
    drawn_last = drawn_in_period(conn, consumptions.c.project_credit_uuid, credit_uuids,
                                 month.last)
    cost_now = creditable_cost(conn, rows, month.current, restrictions)
    views = []
    for row in rows:
        spendable = min(row.value, row.customer_credit)
        views.append({
            "row": row,
            "allocated_customer_credit": allocated.get(row.customer_uuid),
            "consumption_last_month": (drawn_last.get(row.uuid, ZERO)
                                       if row.customer_uuid in invoiced_last else None),
            "creditable_cost_this_month": (cost_now.get(row.project_uuid, ZERO)
                                           if row.customer_uuid in invoiced_now else None),
            "spendable_value": spendable,
            "is_limited_by_organization_credit": spendable < row.value,
            "offerings": restrictions.get(row.org_uuid, []),
            "minimal_consumption": minimal_consumption(terms_of(row), today),
        })
    return views


def customer_credit_views(conn: Connection, rows: list[Any], today: date) -> list[dict[str, Any]]:
    month = Month.of(today)
    customer_uuids = sorted({row.customer_uuid for row in rows})
    allocated = allocated_by_customer(conn, customer_uuids)
    restrictions = offerings_of(conn, [row.uuid for row in rows])
    invoiced_last = customers_with_items(conn, customer_uuids, month.last)
    drawn_last = drawn_in_period(conn, consumptions.c.customer_credit_uuid,
                                 [row.uuid for row in rows], month.last)
    return [{
        "row": row,
        "allocated_to_projects": allocated.get(row.customer_uuid, ZERO),
        "consumption_last_month": (drawn_last.get(row.uuid, ZERO)
                                   if row.customer_uuid in invoiced_last else None),
        "offerings": restrictions.get(row.uuid, []),
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
