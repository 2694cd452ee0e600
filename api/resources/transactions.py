"""/api/credit-transactions/: upstream's read-only credit ledger (reference §1.4, §3.3).

Rows come from the `credit_transactions` read model: one per balance change of an
organisation credit (`credit_uuid` set) or a project credit (`project_credit_uuid` set).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import ColumnElement, Select, false, or_, select

from api.http.common import Resource, apply_uuid_filter, parse_uuid
from api.http.errors import not_found, validation_error
from api.http.listing import ListQuery, last_param, narrowed, ordering, paginate, parse_moment
from api.http.routes import Route
from api.http.schema import (
    DATE,
    DATETIME,
    HEX_UUID,
    LIST_HEADERS,
    MONEY,
    PAGINATION,
    STRING,
    UUID_FILTER,
    array,
    errors,
    json_response,
    nullable,
    obj,
    operation,
    ordering_parameter,
    param_ref,
    query,
    read_only,
    ref,
)
from api.resources.representations import iso_date, iso_datetime
from ledger.access import Principal
from ledger.money import format_money
from projections.tables import credit_transactions as tx
from projections.transactions import DISPLAY

NOT_FOUND = "No CreditTransaction matches the given query."
ORDERING = {"created": tx.c.created, "billing_period": tx.c.billing_period}
DEFAULT_ORDER: list[ColumnElement[Any]] = [tx.c.created.desc(), tx.c.position.desc()]
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def visible(principal: Principal) -> Select[Any]:
    """Staff and support see every row; others their customers' and projects' rows."""
    query = select(tx)
    if principal.sees_everything:
        return query
    customers, projects = principal.customer_uuids(), principal.project_uuids()
    if not customers and not projects:
        return query.where(false())
    return query.where(or_(tx.c.customer_uuid.in_(customers), tx.c.project_uuid.in_(projects)))


def date_filter(req: falcon.Request, name: str) -> date | None:
    """django-filter DateFilter: YYYY-MM-DD, otherwise a DRF-shaped 400."""
    raw = last_param(req, name)
    if raw is None:
        return None
    try:
        if _DATE.fullmatch(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise validation_error({name: ["Enter a valid date."]})


def moment_filter(req: falcon.Request, name: str) -> datetime | None:
    """ISO 8601 date or date-time, with or without a zone (UTC when absent)."""
    raw = last_param(req, name)
    if raw is None:
        return None
    try:
        return parse_moment(raw)
    except ValueError:
        raise validation_error({name: ["Enter a valid date/time."]}) from None


def listed(req: falcon.Request, principal: Principal) -> ListQuery:
    keys = order(req)
    return ListQuery(filtered(req, principal).order_by(*keys), narrow=narrowed(req), order=keys)


def filtered(req: falcon.Request, principal: Principal) -> Select[Any]:
    query = visible(principal)
    query = apply_uuid_filter(query, req, "credit_uuid", tx.c.credit_uuid)
    query = apply_uuid_filter(query, req, "customer_uuid", tx.c.customer_uuid)
    query = apply_uuid_filter(query, req, "project_credit_uuid", tx.c.project_credit_uuid)
    if (project := last_param(req, "project_uuid")) is not None:
        project_hex = _hex_or_none(project)
        query = query.where(tx.c.project_uuid == project_hex if project_hex else false())
    if (kind := last_param(req, "transaction_type")) is not None:
        query = query.where(tx.c.transaction_type == kind if kind in DISPLAY else false())
    if (day := date_filter(req, "billing_period")) is not None:
        query = query.where(tx.c.billing_period == day)
    if (day := date_filter(req, "billing_period_after")) is not None:
        query = query.where(tx.c.billing_period >= day)
    if (day := date_filter(req, "billing_period_before")) is not None:
        query = query.where(tx.c.billing_period <= day)
    if (moment := moment_filter(req, "created_from")) is not None:
        query = query.where(tx.c.created >= moment)
    if (moment := moment_filter(req, "created_to")) is not None:
        query = query.where(tx.c.created < moment)
    return query


def order(req: falcon.Request) -> list[Any]:
    """`o` as upstream. The item lines of one draw event share `created`; they follow
    `o=created` / `o=-created` in their line order (``position``)."""
    found = ordering(req, ORDERING, DEFAULT_ORDER)
    keys = [key.strip() for key in (last_param(req, "o") or "").split(",") if key.strip()]
    for index, key in enumerate(keys):
        if key.removeprefix("-") == "created":
            position = tx.c.position.desc() if key.startswith("-") else tx.c.position.asc()
            found.insert(index + 1, position)
            break
    return found


def _hex_or_none(text: str) -> str | None:
    """`project_uuid` is a plain CharFilter upstream: any spelling of a uuid, else no rows."""
    try:
        return UUID(text.strip()).hex
    except ValueError:
        return None


def transaction(row: Any, principal: Principal) -> dict[str, Any]:
    """Upstream's CreditTransactionSerializer fields, then ours.

    `balance_after` of an organisation row is the organisation's balance: like the other
    organisation totals it is null for callers who are not staff, support or owners.
    """
    shows_balance = row.credit_uuid is None or principal.sees_organisation_fields(
        row.customer_uuid)
    return {
        "uuid": row.uuid,
        "created": iso_datetime(row.created),
        "amount": format_money(row.amount),
        "transaction_type": row.transaction_type,
        "transaction_type_display": DISPLAY.get(row.transaction_type, row.transaction_type),
        "comment": row.comment,
        "customer_uuid": row.customer_uuid,
        "customer_name": row.customer_name,
        "project_uuid": row.project_uuid or "",
        "project_name": row.project_name or "",
        "billing_period": iso_date(row.billing_period),
        "balance_after": format_money(row.balance_after) if shows_balance else None,
        "credit_uuid": row.credit_uuid,
        "project_credit_uuid": row.project_credit_uuid,
    }


MOMENT_NOTE = "(ISO 8601; UTC without a zone)"
FILTERS = [
    query("credit_uuid", UUID_FILTER), query("customer_uuid", UUID_FILTER),
    query("project_credit_uuid", UUID_FILTER), query("project_uuid", STRING),
    query("transaction_type", STRING), query("billing_period", DATE),
    query("billing_period_after", DATE), query("billing_period_before", DATE),
    query("created_from", DATETIME, f"Recorded at or after {MOMENT_NOTE}"),
    query("created_to", DATETIME, f"Recorded before {MOMENT_NOTE}"),
    ordering_parameter({"type": "string", "enum": sorted(
        [*ORDERING, *(f"-{key}" for key in ORDERING)])}),
    *PAGINATION,
]
LISTED = json_response(array(ref("CreditTransaction")), headers=LIST_HEADERS)
TAG = "credit-transactions"


class CreditTransactions(Resource):
    routes = [
        Route("/api/credit-transactions/", {
            "get": operation("credit_transactions_list", TAG, "Every balance change of every "
                             "visible credit, newest first", {"200": LISTED, **errors(400, 404)},
                             parameters=FILTERS),
            "head": operation("credit_transactions_count", TAG, "Count (headers only)", {
                "200": {"description": "No response body", "headers": LIST_HEADERS},
                **errors(400, 404)}, parameters=FILTERS),
        }),
        Route("/api/credit-transactions/{uuid}/", {
            "parameters": [param_ref("Uuid")],
            "get": operation("credit_transactions_retrieve", TAG, "Retrieve", {
                "200": json_response(ref("CreditTransaction")), **errors(404)}),
        }, suffix="item"),
    ]
    schemas = {"CreditTransaction": obj({
        "uuid": read_only(HEX_UUID), "created": read_only(DATETIME), "amount": MONEY,
        "transaction_type": ref("CreditTransactionTypeEnum"),
        "transaction_type_display": read_only(STRING), "comment": STRING,
        "customer_uuid": nullable(HEX_UUID), "customer_name": nullable(STRING),
        "project_uuid": {**STRING, "description": "Empty when no project is concerned."},
        "project_name": STRING, "billing_period": nullable(DATE), "balance_after": MONEY,
        "credit_uuid": nullable(HEX_UUID), "project_credit_uuid": nullable(HEX_UUID),
    }, ["uuid", "created", "amount", "transaction_type", "transaction_type_display",
        "comment", "customer_uuid", "customer_name", "project_uuid", "project_name",
        "billing_period", "balance_after", "credit_uuid", "project_credit_uuid"])}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: listed(req, principal))
        resp.media = [transaction(row, principal) for row in page.rows]

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            paginate(conn, req, resp, lambda: listed(req, principal), rows=False)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.principal(req)
        row_uuid = parse_uuid(uuid, NOT_FOUND).hex
        with self.services.reads.connect() as conn:
            row = conn.execute(visible(principal).where(tx.c.uuid == row_uuid)).first()
        if row is None:
            raise not_found(NOT_FOUND)
        resp.media = transaction(row, principal)
