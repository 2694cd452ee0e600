"""GET /api/reconciliation/?period=YYYY-MM (a month's roll-forward) and
GET /api/reconciliation/usage/?period=YYYY-MM (usage of a billing period): staff and
support.

JSON by default; CSV with `format=csv` or `Accept: text/csv` (UTF-8 with a byte-order
mark unless `bom=false`). A CSV holds one kind of line (`lines=`), so that every money
column sums to the matching JSON total. The rules (attribution, columns, checks) live in
projections/reconciliation.py; both answers are read from indexed read-model tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import falcon

from api.http.common import Resource
from api.http.errors import validation_error
from api.http.fields import FieldError, period_field
from api.http.listing import boolean_param, last_param
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    HEX_UUID,
    INTEGER,
    MONEY,
    PERIOD,
    STRING,
    Json,
    array,
    errors,
    nullable,
    obj,
    operation,
    query,
    ref,
    text_response,
)
from api.http.spreadsheet import csv_text, json_ready
from ledger.money import format_money
from ledger.periods import Period
from projections.reconciliation import (
    COLUMNS,
    ITEM_COLUMNS,
    USAGE_COLUMNS,
    Report,
    Row,
    Usage,
    reconcile,
    usage,
)

FORMATS = ("json", "csv")
LABELS = ("kind", "uuid", "customer_uuid", "customer_name", "project_uuid", "project_name")
FIGURES = ("opening", *COLUMNS, "closing", "ties_out")
REPORT_LINES = ("credits", "billing_periods", "totals")
USAGE_LINES = ("credits", "projects", "totals")
PROJECT_LABELS = ("customer_uuid", "customer_name", "project_uuid", "project_name")


def report_csv_rows(report: Report, lines: str = "credits") -> Iterator[list[Any]]:
    """One kind of line: a line per credit, per credit and billing period, or per kind."""
    month = str(report.period)
    if lines == "credits":
        yield ["month", *LABELS, *FIGURES]
        for row in report.rows:
            yield [month, *_labels(row), *_figures(row.figures.as_dict())]
    elif lines == "billing_periods":
        yield ["month", "billing_period", *LABELS, *COLUMNS]
        for row in report.rows:
            for period, movements in sorted(row.by_billing_period.items(),
                                            key=lambda item: item[0] or ""):
                yield [month, period, *_labels(row), *(movements[name] for name in COLUMNS)]
    else:
        yield ["month", "kind", *FIGURES]
        for kind, figures in report.totals.items():
            yield [month, kind, *_figures(figures.as_dict())]


def usage_csv_rows(found: Usage, lines: str = "credits") -> Iterator[list[Any]]:
    """One kind of line: per credit, per project (posted, drawn, uncovered), or per kind."""
    data = found.as_dict()
    period, closed = data["billing_period"], data["closed"]
    if lines == "credits":
        yield ["billing_period", "closed", *LABELS, *USAGE_COLUMNS, "total"]
        for row in data["rows"]:
            yield [period, closed, *(row[name] for name in (*LABELS, *USAGE_COLUMNS, "total"))]
    elif lines == "projects":
        yield ["billing_period", "closed", *PROJECT_LABELS, *ITEM_COLUMNS]
        for row in data["projects"]:
            yield [period, closed, *(row[name] for name in (*PROJECT_LABELS, *ITEM_COLUMNS))]
    else:
        yield ["billing_period", "closed", "kind", *USAGE_COLUMNS, "total"]
        for kind, values in data["totals"].items():
            yield [period, closed, kind, *(values[name] for name in (*USAGE_COLUMNS, "total"))]


def _labels(row: Row) -> list[Any]:
    return [row.labels()[name] for name in LABELS]


def _figures(values: dict[str, Any]) -> list[Any]:
    return [values[name] for name in FIGURES]


def lines_param(req: falcon.Request, choices: tuple[str, ...]) -> str:
    """`lines`: which kind of line a CSV holds (the first choice when absent)."""
    return choice(last_param(req, "lines"), choices, "lines")


def choice(raw: str | None, choices: tuple[str, ...], name: str) -> str:
    """One of `choices` (the first when absent), else a DRF-shaped 400 naming the field."""
    if raw is None:
        return choices[0]
    if raw not in choices:
        raise validation_error({name: [
            f"Select a valid choice. {raw} is not one of the available choices."]})
    return raw


def period_param(req: falcon.Request, today: date) -> Period:
    """`period`, required: a month that has begun."""
    return required_period(last_param(req, "period"), today, "period")


def required_period(raw: str | None, today: date, name: str) -> Period:
    """A required month that has begun; a DRF-shaped 400 naming the field otherwise."""
    if raw is None:
        raise validation_error({name: ["This field is required."]})
    try:
        parsed: Period = period_field(Period.of(today))(raw)
    except FieldError as error:
        raise validation_error({name: error.messages}) from None
    return parsed


def format_param(req: falcon.Request) -> str:
    """`format` wins; otherwise CSV only when the client prefers it to JSON. A bad `bom`
    is refused whatever the format."""
    bom_param(req)
    if (chosen := last_param(req, "format")) is not None:
        return choice(chosen, FORMATS, "format")
    preferred = req.client_prefers(["application/json", "text/csv"])
    return "csv" if preferred == "text/csv" else "json"


def bom_param(req: falcon.Request) -> bool:
    found = boolean_param(req, "bom")
    return True if found is None else found


def send_csv(req: falcon.Request, resp: falcon.Response, rows: Iterator[list[Any]],
             filename: str) -> None:
    bom = bom_param(req)
    resp.content_type = "text/csv; charset=utf-8"
    resp.set_header("Content-Disposition", f'attachment; filename="{filename}"')
    resp.text = csv_text(rows, bom=bom)


FORMAT_PARAM = query("format", {"type": "string", "enum": list(FORMATS)},
                     "csv, or json (default; also chosen by the Accept header)")
BOM_PARAM = query("bom", BOOLEAN, "CSV only: start with a UTF-8 byte-order mark "
                                  "(default true)")
PERIOD_PARAM = query("period", PERIOD, required=True)
LINES_NOTE = "CSV only: which kind of line the file holds (default credits)"
LINES_PARAM = query("lines", {"type": "string", "enum": list(REPORT_LINES)}, LINES_NOTE)
USAGE_LINES_PARAM = query("lines", {"type": "string", "enum": list(USAGE_LINES)}, LINES_NOTE)
TIES_OUT_HEADERS: Json = {
    "X-Reconciliation-Ties-Out": {"schema": {"type": "string", "enum": ["true", "false"]}},
    "X-Reconciliation-Closing-Matches": {"schema": {"type": "string",
                                                    "enum": ["true", "false"]}}}


def json_or_csv(schema: str) -> Json:
    return {"description": "JSON, or CSV with format=csv",
            "content": {"application/json": {"schema": ref(schema)},
                        "text/csv": {"schema": STRING}}}


CREDIT_KIND = {"type": "string", "enum": ["customer_credit", "project_credit"]}
CREDIT_LABELS = {"kind": CREDIT_KIND, "uuid": STRING, "customer_uuid": STRING,
                 "customer_name": STRING, "project_uuid": STRING, "project_name": STRING}
FIGURES_SCHEMA = {"opening": MONEY, **dict.fromkeys(COLUMNS, MONEY), "closing": MONEY,
                  "ties_out": {**BOOLEAN, "description": "opening + movements = closing"}}
USAGE_FIGURES = (*USAGE_COLUMNS, "total")
PROJECT_USAGE = {"billing_period": PERIOD, "customer_uuid": HEX_UUID, "customer_name": STRING,
                 "project_uuid": HEX_UUID, "project_name": STRING,
                 **dict.fromkeys(ITEM_COLUMNS, MONEY)}
SCHEMAS: Json = {
    "ReconciliationRow": obj({
        **CREDIT_LABELS, **FIGURES_SCHEMA,
        "by_billing_period": array(obj({
            "billing_period": nullable(PERIOD), **dict.fromkeys(COLUMNS, MONEY)},
            ["billing_period", *COLUMNS])),
    }, [*CREDIT_LABELS, *FIGURES_SCHEMA, "by_billing_period"]),
    "Reconciliation": obj({
        "period": PERIOD, "opening_at": DATETIME, "closing_at": DATETIME,
        "attribution": STRING, "rows": array(ref("ReconciliationRow")),
        "totals": obj({kind: obj(FIGURES_SCHEMA, list(FIGURES_SCHEMA))
                       for kind in ("customer_credit", "project_credit")}),
        "summary": obj({
            "rows": INTEGER, "all_rows_tie_out": BOOLEAN, "totals_tie_out": BOOLEAN,
            "closing_compared_with": array({
                "type": "string", "enum": ["credit_transactions", "live_read_model"]}),
            "closing_matches": BOOLEAN, "mismatches": array(STRING),
        }, ["rows", "all_rows_tie_out", "totals_tie_out", "closing_compared_with",
            "closing_matches", "mismatches"]),
    }, ["period", "opening_at", "closing_at", "attribution", "rows", "totals", "summary"]),
    "Usage": obj({
        "billing_period": PERIOD, "closed": BOOLEAN,
        "rows": array(obj({**CREDIT_LABELS, **dict.fromkeys(USAGE_FIGURES, MONEY)},
                          [*CREDIT_LABELS, *USAGE_FIGURES])),
        "totals": obj({kind: obj({
            **dict.fromkeys(USAGE_FIGURES, MONEY),
            "recorded_in": {"type": "object", "additionalProperties": MONEY,
                            "description": "Net amount by the month it was recorded in."}})
            for kind in ("customer_credit", "project_credit")}),
        "projects": array(obj(PROJECT_USAGE, list(PROJECT_USAGE),
                              "Live items per project: posted = drawn + uncovered.")),
        "project_totals": obj(dict.fromkeys(ITEM_COLUMNS, MONEY), list(ITEM_COLUMNS)),
    }, ["billing_period", "closed", "rows", "totals", "projects", "project_totals"]),
}
TAG = "reconciliation"


class Reconciliation(Resource):
    routes = [
        Route("/api/reconciliation/", {"get": operation(
            "reconciliation_retrieve", TAG,
            "A month's reconciliation per credit (staff, support): opening + movements = "
            "closing", {
                "200": {"description": "The report (JSON first: generated clients read "
                                       "JSON here and use reconciliation_csv_retrieve "
                                       "for CSV)",
                        "headers": TIES_OUT_HEADERS,
                        "content": {"application/json": {"schema": ref("Reconciliation")},
                                    "text/csv": {"schema": STRING}}},
                **errors(400, 403)},
            parameters=[PERIOD_PARAM, FORMAT_PARAM, BOM_PARAM, LINES_PARAM])}),
        Route("/api/reconciliation/csv/", {"get": operation(
            "reconciliation_csv_retrieve", TAG, "The same report as CSV (staff, support)", {
                "200": {**text_response("text/csv", "The report: one kind of line, a line "
                                                    "per credit, per credit and billing "
                                                    "period, or per kind (`lines`)"),
                        "headers": TIES_OUT_HEADERS},
                **errors(400, 403)},
            parameters=[PERIOD_PARAM, BOM_PARAM, LINES_PARAM])}, suffix="csv"),
        Route("/api/reconciliation/usage/", {"get": operation(
            "reconciliation_usage_retrieve", TAG,
            "Usage of a billing period wherever it was recorded, and whether it is closed "
            "(staff, support)", {"200": json_or_csv("Usage"), **errors(400, 403)},
            parameters=[query("period", PERIOD, "The billing period.", required=True),
                        FORMAT_PARAM, BOM_PARAM, USAGE_LINES_PARAM])}, suffix="usage"),
    ]
    schemas = SCHEMAS

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, format_param(req))

    def on_get_csv(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Its own route, so that generated clients see one media type per operation."""
        self._answer(req, resp, "csv")

    def on_get_usage(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auditor(req)
        kind = format_param(req)
        lines = lines_param(req, USAGE_LINES)
        period = period_param(req, self.services.today())
        with self.services.reads.connect() as conn:
            found = usage(conn, period)
        if kind == "csv":
            send_csv(req, resp, usage_csv_rows(found, lines), f"usage-{period}-{lines}.csv")
        else:
            resp.media = json_ready(found.as_dict())

    def _answer(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        self.auditor(req)
        lines = lines_param(req, REPORT_LINES)
        period = period_param(req, self.services.today())
        with self.services.reads.connect() as conn:
            report = reconcile(conn, period, self.services.today())
        summary = report.summary()
        resp.set_header("X-Reconciliation-Ties-Out", str(summary["all_rows_tie_out"]).lower())
        resp.set_header("X-Reconciliation-Closing-Matches",
                        str(summary["closing_matches"]).lower())
        if kind == "csv":
            send_csv(req, resp, report_csv_rows(report, lines),
                     f"reconciliation-{period}-{lines}.csv")
        else:
            resp.media = report.as_dict(format_money)
