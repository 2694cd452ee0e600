"""GET /api/customer-credits/{uuid}/statement/?period=YYYY-MM: an owner's monthly statement.

Staff, support and the organisation's owners may read it. Whoever cannot see the credit
gets the credit's own 404; whoever can see it but is not an owner (another role in the
organisation) gets 403. Staff and support may also read a deleted credit's statements,
as its history. The content is built in projections/statements.py from read models.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import falcon

from api.http.common import Resource, parse_uuid
from api.http.errors import not_found, permission_denied
from api.http.spreadsheet import json_ready
from api.resources.history import CUSTOMER_NOT_FOUND, customer_credit_candidates
from api.resources.reconciliation import format_param, period_param, send_csv
from projections.reconciliation import instant
from projections.statements import Statement, statement
from projections.tables import customer_credits

LINE_FIELDS = ("date", "type", "credit", "credit_uuid", "project_uuid", "project_name",
               "item_id", "billing_period", "amount", "balance_after", "description")


def statement_csv_rows(found: Statement) -> list[list[Any]]:
    """Header; the opening line; one line per transaction; the closing line."""
    month = str(found.period)

    def edge(kind: str, moment: datetime, balance: Decimal) -> list[Any]:
        line = {**dict.fromkeys(LINE_FIELDS), "date": moment.isoformat(), "type": kind,
                "credit": "organisation", "credit_uuid": found.credit_uuid,
                "balance_after": balance}
        return [month, *(line[name] for name in LINE_FIELDS)]

    return [
        ["month", *LINE_FIELDS],
        edge("opening", instant(found.period), found.opening),
        *([month, *(line[name] for name in LINE_FIELDS)] for line in found.lines),
        edge("closing", instant(found.period.next()), found.closing),
    ]


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
