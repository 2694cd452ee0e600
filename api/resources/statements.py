"""GET /api/customer-credits/{uuid}/statement/?period=YYYY-MM: an owner's monthly statement.

Staff, support and the organisation's owners may read it. Whoever cannot see the credit
gets the credit's own 404; whoever can see it but is not an owner (another role in the
organisation) gets 403. Staff and support may also read a deleted credit's statements,
as its history. The content is built in projections/statements.py from read models.
"""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import Connection

from api.http.common import Resource, parse_uuid
from api.http.errors import not_found, permission_denied
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    HEX_UUID,
    MONEY,
    PERIOD,
    STRING,
    array,
    errors,
    nullable,
    obj,
    operation,
    param_ref,
)
from api.http.spreadsheet import json_ready
from api.resources.history import CUSTOMER_NOT_FOUND, customer_credit_candidates
from api.resources.reconciliation import (
    BOM_PARAM,
    FORMAT_PARAM,
    PERIOD_PARAM,
    format_param,
    json_or_csv,
    period_param,
    send_csv,
)
from ledger.access import Principal
from projections.reconciliation import COLUMNS
from projections.statements import Statement, statement
from projections.tables import customer_credits

LINE_FIELDS = ("date", "scope", "type", "column", "credit_uuid", "project_uuid",
               "project_name", "item_id", "billing_period", "amount", "organisation_balance",
               "project_balance", "description")


def statement_csv_rows(found: Statement) -> list[list[Any]]:
    """Header and one row per movement: its scope (organisation or project) and the balance
    after it on each scope, the organisation's carried from the opening; nothing else, so
    `amount` sums per scope and column to the JSON totals."""
    month = str(found.period)
    organisation = found.opening
    rows: list[list[Any]] = [["month", *LINE_FIELDS]]
    for line in found.lines:
        own = line["credit"] == "organisation"
        if own:
            organisation = line["balance_after"]
        values = {**line, "scope": line["credit"], "organisation_balance": organisation,
                  "project_balance": None if own else line["balance_after"]}
        rows.append([month, *(values[name] for name in LINE_FIELDS)])
    return rows


LINE = obj({
    "date": DATETIME, "type": STRING,
    "column": {"type": "string", "enum": list(COLUMNS)},
    "credit": {"type": "string", "enum": ["organisation", "project"]},
    "credit_uuid": HEX_UUID, "project_uuid": nullable(HEX_UUID),
    "project_name": nullable(STRING), "item_id": nullable(STRING),
    "billing_period": nullable(PERIOD), "amount": MONEY, "balance_after": MONEY,
    "description": STRING,
}, ["date", "type", "column", "credit", "credit_uuid", "project_uuid", "project_name",
    "item_id", "billing_period", "amount", "balance_after", "description"])


def owned_credit(conn: Connection, principal: Principal, credit_uuid: str) -> Any:
    """The organisation credit, for staff, support and its organisation's owners: 404 for
    whoever cannot see it, 403 for whoever sees it without owning the organisation."""
    row = conn.execute(customer_credit_candidates(principal).where(
        customer_credits.c.uuid == credit_uuid)).first()
    if row is None:
        raise not_found(CUSTOMER_NOT_FOUND)
    if not (principal.sees_everything or principal.is_owner(row.customer_uuid)):
        raise permission_denied()
    return row


class CreditStatement(Resource):
    routes = [Route("/api/customer-credits/{uuid}/statement/", {
        "parameters": [param_ref("Uuid")],
        "get": operation(
            "customer_credits_statement", "customer-credits",
            "A month's statement of the organisation credit (staff, support, owners)", {
                "200": json_or_csv("Statement"), **errors(400, 403, 404)},
            parameters=[PERIOD_PARAM, FORMAT_PARAM, BOM_PARAM])})]
    schemas = {"Statement": obj({
        "credit_uuid": HEX_UUID, "customer_uuid": HEX_UUID, "period": PERIOD,
        "opening_at": DATETIME, "closing_at": DATETIME, "opening": MONEY,
        "lines": array(LINE), "closing": MONEY, "ties_out": BOOLEAN,
        "totals": obj({scope: obj(dict.fromkeys(COLUMNS, MONEY), list(COLUMNS))
                       for scope in ("organisation", "project")},
                      ["organisation", "project"], "Lines summed per scope and column."),
        "project_credits": array(obj({
            "uuid": HEX_UUID, "project_uuid": HEX_UUID, "project_name": nullable(STRING),
            "opening": MONEY, "closing": MONEY},
            ["uuid", "project_uuid", "project_name", "opening", "closing"])),
    }, ["credit_uuid", "customer_uuid", "period", "opening_at", "closing_at", "opening",
        "lines", "closing", "ties_out", "totals", "project_credits"])}

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.principal(req)
        credit_uuid = parse_uuid(uuid, CUSTOMER_NOT_FOUND).hex
        with self.services.reads.connect() as conn:
            row = owned_credit(conn, principal, credit_uuid)
            kind = format_param(req)
            period = period_param(req, self.services.today())
            found = statement(conn, credit_uuid, row.customer_uuid, period)
        if kind == "csv":
            send_csv(req, resp, iter(statement_csv_rows(found)),
                     f"statement-{credit_uuid}-{period}.csv")
        else:
            resp.media = json_ready(found.as_dict())
