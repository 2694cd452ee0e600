"""GET /api/customer-credits/{uuid}/statement/?period=YYYY-MM: an owner's monthly statement.

Staff, support and the organisation's owners may read it. Whoever cannot see the credit
gets the credit's own 404; whoever can see it but is not an owner (another role in the
organisation) gets 403. Staff and support may also read a deleted credit's statements,
as its history. The content is built in projections/statements.py from read models.
"""

from __future__ import annotations

from typing import Any

import falcon

from api.common import Resource, parse_uuid
from api.errors import not_found, permission_denied
from api.history import CUSTOMER_NOT_FOUND, customer_credit_candidates
from api.reconciliation import format_param, period_param, send_csv
from api.spreadsheet import json_ready
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


class CreditStatement(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.principal(req)
        credit_uuid = parse_uuid(uuid, CUSTOMER_NOT_FOUND).hex
        with self.services.reads.connect() as conn:
            row = conn.execute(customer_credit_candidates(principal).where(
                customer_credits.c.uuid == credit_uuid)).first()
            if row is None:
                raise not_found(CUSTOMER_NOT_FOUND)
            if not (principal.sees_everything or principal.is_owner(row.customer_uuid)):
                raise permission_denied()
            kind = format_param(req)
            period = period_param(req, self.services.today())
            found = statement(conn, credit_uuid, row.customer_uuid, period)
        if kind == "csv":
            send_csv(req, resp, iter(statement_csv_rows(found)),
                     f"statement-{credit_uuid}-{period}.csv")
        else:
            resp.media = json_ready(found.as_dict())
