"""GET /api/consumptions/ and GET /api/consumptions/{id}/: posted consumption items.

Each item shows what was posted (`amount`), what credits covered
(`drawn_from_project_credit`, `drawn_from_customer_credit`) and what nobody paid for
(`uncovered`), so uncovered usage is visible item by item. Items are visible to the same
people as the project's credit: staff and support see all; a customer role sees its
organisation's items, a project role its project's.
"""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import Select, or_, select

from api.http.common import apply_uuid_filter, uuid_param
from api.http.errors import validation_error
from api.http.listing import ListQuery, boolean_param, last_param, narrowed
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    HEX_UUID,
    LIST_HEADERS,
    MONEY,
    PAGINATION,
    PERIOD,
    STRING,
    UUID_FILTER,
    Json,
    array,
    errors,
    json_response,
    nullable,
    obj,
    operation,
    query,
    ref,
)
from api.resources.representations import iso_datetime
from ledger.access import Principal
from ledger.money import ZERO, format_money
from ledger.periods import Period
from projections.tables import consumptions, credit_versions

item = consumptions.c
NOT_FOUND = "No consumption item matches the given query."


def visible(principal: Principal) -> Select[Any]:
    query = select(consumptions)
    if principal.sees_everything:
        return query
    return query.where(or_(item.customer_uuid.in_(principal.customer_uuids()),
                           item.project_uuid.in_(principal.project_uuids())))


def listed(req: falcon.Request, principal: Principal) -> ListQuery:
    """The visible items, filtered, newest first."""
    query = visible(principal)
    for name in ("customer_uuid", "project_uuid", "offering_uuid", "customer_credit_uuid"):
        query = apply_uuid_filter(query, req, name, item[name])
    query = project_credit_filter(query, req)
    if (raw := last_param(req, "period")) is not None:
        try:
            query = query.where(item.period == str(Period.parse(raw)))
        except ValueError:
            raise validation_error({"period": ["Enter a billing period as YYYY-MM."]}) from None
    if (reversed_ := boolean_param(req, "reversed")) is not None:
        query = query.where(item.reversed == reversed_)
    if (uncovered := boolean_param(req, "uncovered")) is not None:
        query = query.where(item.uncovered > ZERO if uncovered else item.uncovered == ZERO)
    order = [item.created.desc(), item.item_id.desc()]
    return ListQuery(query.order_by(*order), narrow=narrowed(req), order=order)


def project_credit_filter(query: Select[Any], req: falcon.Request) -> Select[Any]:
    """`project_credit_uuid`, answered from the project index: a project credit belongs to
    one project, which its first version names (kept after the credit is deleted)."""
    credit = uuid_param(req, "project_credit_uuid")
    if credit is None:
        return query
    its_project = select(credit_versions.c.project_uuid).where(
        credit_versions.c.uuid == credit, credit_versions.c.version == 1)
    return query.where(item.project_credit_uuid == credit, item.project_uuid.in_(its_project))


def representation(row: Any) -> dict[str, Any]:
    return {
        "id": row.item_id, "customer_uuid": row.customer_uuid,
        "project_uuid": row.project_uuid, "offering_uuid": row.offering_uuid,
        "period": row.period, "amount": format_money(row.amount),
        "drawn_from_project_credit": format_money(row.drawn_from_project_credit),
        "drawn_from_customer_credit": format_money(row.drawn_from_customer_credit),
        "uncovered": format_money(row.uncovered),
        "project_credit_uuid": row.project_credit_uuid,
        "customer_credit_uuid": row.customer_credit_uuid, "reversed": row.reversed,
        "reversed_at": iso_datetime(row.reversed_at) if row.reversed_at else None,
        "reversed_by": row.reversed_by, "created": iso_datetime(row.created),
    }


FILTERS = [query("customer_uuid", UUID_FILTER), query("project_uuid", UUID_FILTER),
           query("offering_uuid", UUID_FILTER),
           query("customer_credit_uuid", UUID_FILTER, "items whose draws moved this credit"),
           query("project_credit_uuid", UUID_FILTER, "items drawn from this project credit"),
           query("period", PERIOD),
           query("reversed", BOOLEAN),
           query("uncovered", BOOLEAN, "true: uncovered > 0; false: = 0"), *PAGINATION]
LIST_OPERATIONS: Json = {
    "get": operation("consumptions_list", "consumptions",
                     "Posted items, newest first (whoever sees the project's credit)", {
                         "200": json_response(array(ref("ConsumptionItem")),
                                              headers=LIST_HEADERS),
                         **errors(400, 404)}, parameters=FILTERS),
    "head": operation("consumptions_count", "consumptions", "Count (headers only)", {
        "200": {"description": "No response body", "headers": LIST_HEADERS},
        **errors(400, 404)}, parameters=FILTERS),
}
SCHEMA = obj({
    "id": STRING, "customer_uuid": HEX_UUID, "project_uuid": HEX_UUID,
    "offering_uuid": nullable(HEX_UUID), "period": PERIOD, "amount": MONEY,
    "drawn_from_project_credit": MONEY, "drawn_from_customer_credit": MONEY,
    "uncovered": MONEY,
    "project_credit_uuid": {**nullable(HEX_UUID), "description": (
        "The project credit the item drew from; null when it drew nothing from one.")},
    "customer_credit_uuid": {**nullable(HEX_UUID), "description": (
        "The organisation credit whose balance the item's draws moved (directly, or "
        "through the project credit); null when the item drew nothing.")},
    "reversed": BOOLEAN, "reversed_at": nullable(DATETIME),
    "reversed_by": {**nullable(STRING), "description": "The username."},
    "created": DATETIME,
}, ["id", "customer_uuid", "project_uuid", "offering_uuid", "period", "amount",
    "drawn_from_project_credit", "drawn_from_customer_credit", "uncovered",
    "project_credit_uuid", "customer_credit_uuid", "reversed", "reversed_at", "reversed_by",
    "created"])
