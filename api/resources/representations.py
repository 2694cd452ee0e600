"""Wire shapes: upstream's field sets and order, hex uuids, absolute links, decimal strings."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ledger.money import format_money
from projections.queries import Offering
from projections.reconciliation import iso_utc

ORGANIZATION_SCOPED_FIELDS = ("customer_credit", "allocated_customer_credit", "offerings")
NONE = (None, "", "[]")  # most credits set no thresholds: no JSON to parse per row


def link(base: str, collection: str, uuid: str) -> str:
    return f"{base}/api/{collection}/{uuid}/"


def money_or_none(amount: Decimal | None) -> str | None:
    return None if amount is None else format_money(amount)


def iso_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def iso_datetime(moment: datetime) -> str:
    """Timestamps are UTC; SQLite hands them back naive."""
    return iso_utc(moment)


def offering(base: str, item: Offering, collection: str) -> dict[str, Any]:
    return {"uuid": item.uuid, "url": link(base, collection, item.uuid), "type": item.type,
            "name": item.name}


def _terms(row: Any, view: dict[str, Any]) -> dict[str, Any]:
    return {
        "end_date": iso_date(row.end_date),
        "expected_consumption": format_money(row.expected_consumption),
        "minimal_consumption": f"{view['minimal_consumption']:f}",  # never "0E-7"
        "minimal_consumption_logic": row.minimal_consumption_logic,
        "grace_coefficient": str(row.grace_coefficient),
        "apply_as_minimal_consumption": row.apply_as_minimal_consumption,
    }


def alerting(row: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The fields beyond upstream's: thresholds as written and the runway in months."""
    thresholds = row.low_balance_thresholds
    return {"low_balance_thresholds": json.loads(thresholds) if thresholds not in NONE else [],
            "runway_months": view.get("runway_months")}


def project_credit(base: str, view: dict[str, Any], show_organisation: bool) -> dict[str, Any]:
    row = view["row"]
    body: dict[str, Any] = {
        "uuid": row.uuid,
        "url": link(base, "project-credits", row.uuid),
        "value": format_money(row.value),
        "project": link(base, "projects", row.project_uuid),
        "project_name": row.project_name,
        "project_uuid": row.project_uuid,
        "project_slug": row.project_slug,
        "customer_name": row.customer_name,
        "customer_slug": row.customer_slug,
        "customer_uuid": row.customer_uuid,
        "customer_credit": format_money(view["customer_credit"]),
        "allocated_customer_credit": money_or_none(view["allocated_customer_credit"]),
        "consumption_last_month": money_or_none(view["consumption_last_month"]),
        "creditable_cost_this_month": money_or_none(view["creditable_cost_this_month"]),
        "spendable_value": format_money(view["spendable_value"]),
        "is_limited_by_organization_credit": view["is_limited_by_organization_credit"],
        "offerings": [offering(base, o, "marketplace-public-offerings")
                      for o in view["offerings"]],
        **_terms(row, view),
        "mark_unused_credit_as_spent_on_project_termination":
            row.mark_unused_credit_as_spent_on_project_termination,
        **alerting(row, view),
    }
    if not show_organisation:
        for name in ORGANIZATION_SCOPED_FIELDS:
            del body[name]
    return body


def customer_credit(base: str, view: dict[str, Any], nested_offerings: bool) -> dict[str, Any]:
    """CustomerCredit (nested offerings) or CreateCustomerCredit (offering links)."""
    row = view["row"]
    if nested_offerings:
        offers: list[Any] = [offering(base, o, "marketplace-provider-offerings")
                             for o in view["offerings"]]
    else:
        offers = [link(base, "marketplace-provider-offerings", o.uuid) for o in view["offerings"]]
    return {
        "uuid": row.uuid,
        "url": link(base, "customer-credits", row.uuid),
        "value": format_money(row.value),
        "customer": link(base, "customers", row.customer_uuid),
        "customer_name": row.customer_name,
        "customer_uuid": row.customer_uuid,
        "customer_slug": row.customer_slug,
        "offerings": offers,
        **_terms(row, view),
        "allocated_to_projects": format_money(view["allocated_to_projects"]),
        "consumption_last_month": money_or_none(view["consumption_last_month"]),
        "withdrawable_balance": format_money(row.withdrawable_balance),
        "protect_allocations": row.protect_allocations,
        **alerting(row, view),
    }
