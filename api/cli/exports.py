"""Finance exports: files a spreadsheet (or an auditor's tool) opens."""

from __future__ import annotations

import sys

import click

from api.cli.base import cli, database_option, ledger_services, refuse_stale
from ledger.periods import Period


@cli.group()
def export() -> None:
    """Finance exports."""


@export.command("reconciliation")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to report.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True,
                                                      allow_dash=True),
              help="File to write; - for standard output.")
@click.option("--format", "kind", type=click.Choice(["csv", "json"]),
              help="Output format (default: json for *.json, else csv).")
@click.option("--bom/--no-bom", default=True, show_default=True,
              help="Start a CSV with a UTF-8 byte-order mark (spreadsheets need it).")
@database_option
def export_reconciliation(period: str, out: str, kind: str | None, bom: bool,
                          database_url: str) -> int:
    """A month's reconciliation; exit 1 when a row does not tie out or closing drifts."""
    import json

    from api.http.spreadsheet import csv_text
    from api.resources.reconciliation import report_csv_rows
    from ledger.money import format_money
    from projections.reconciliation import reconcile

    parsed = Period.parse(period)
    with ledger_services(database_url) as services:
        refuse_stale(services)
        services.projector.catch_up()
        with services.engine.connect() as conn:
            result = reconcile(conn, parsed, services.today())
    kind = kind or ("json" if out.endswith(".json") else "csv")
    text = (json.dumps(result.as_dict(format_money), indent=2) if kind == "json"
            else csv_text(report_csv_rows(result), bom=bom))
    if out == "-":
        sys.stdout.write(text)
    else:
        with open(out, "w", encoding="utf-8", newline="") as sink:
            sink.write(text)
    summary = result.summary()
    click.echo(f"Wrote {summary['rows']} rows for {parsed} to {out} ({kind}); every row ties "
               f"out: {summary['all_rows_tie_out']}; closing balances match "
               f"{' and '.join(summary['closing_compared_with']).replace('_', ' ')}: "
               f"{summary['closing_matches']}.", err=out == "-")
    return 0 if summary["all_rows_tie_out"] and summary["closing_matches"] else 1
