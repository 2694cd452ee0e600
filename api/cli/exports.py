"""Finance exports: files a spreadsheet (or an auditor's tool) opens."""

from __future__ import annotations

import sys

import click

from api.cli.base import cli, database_option, ledger_services, refuse_stale
from api.cli.periods import started_period


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
@click.option("--lines", type=click.Choice(["credits", "billing_periods", "totals"]),
              default="credits", show_default=True,
              help="Which kind of line a CSV holds (one kind per file, so columns sum).")
@database_option
def export_reconciliation(period: str, out: str, kind: str | None, bom: bool, lines: str,
                          database_url: str) -> int:
    """A month's reconciliation; exit 1 when a row does not tie out or closing drifts."""
    import json

    from api.http.spreadsheet import csv_text
    from api.resources.reconciliation import report_csv_rows
    from ledger.money import format_money
    from projections.reconciliation import reconcile

    with ledger_services(database_url) as services:
        refuse_stale(services)
        parsed = started_period(services, period, closing=False)
        services.projector.catch_up()
        with services.engine.connect() as conn:
            result = reconcile(conn, parsed, services.today())
    kind = kind or ("json" if out.endswith(".json") else "csv")
    text = (json.dumps(result.as_dict(format_money), indent=2) if kind == "json"
            else csv_text(report_csv_rows(result, lines), bom=bom))
    write_out(out, text)
    summary = result.summary()
    click.echo(f"Wrote {summary['rows']} rows for {parsed} to {out} ({kind}); every row ties "
               f"out: {summary['all_rows_tie_out']}; closing balances match "
               f"{' and '.join(summary['closing_compared_with']).replace('_', ' ')}: "
               f"{summary['closing_matches']}.", err=out == "-")
    return 0 if summary["all_rows_tie_out"] and summary["closing_matches"] else 1


@export.command("journal")
@click.option("--format", "kind", type=click.Choice(["beancount", "csv"]), default="beancount",
              show_default=True, help="A beancount file, or CSV with one line per posting.")
@click.option("--through", required=True, metavar="YYYY-MM", help="The last (closed) month.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True,
                                                      allow_dash=True),
              help="File to write; - for standard output.")
@database_option
def export_journal(kind: str, through: str, out: str, database_url: str) -> int:
    """The double-entry journal of every movement up to the end of a closed month."""
    from api.http.errors import ApiError
    from api.http.spreadsheet import csv_text
    from api.resources.journal import build
    from projections.journal import beancount, csv_rows

    with ledger_services(database_url) as services:
        refuse_stale(services)
        services.projector.catch_up()
        with services.engine.connect() as conn:
            try:
                period, found = build(conn, through, services.today())
            except ApiError as error:
                raise click.ClickException(" ".join(error.body["through"])) from None
    write_out(out, beancount(found, period) if kind == "beancount" else csv_text(csv_rows(found)))
    click.echo(f"Wrote {len(found.transactions)} transactions and {len(found.assertions)} "
               f"balance assertions through {period} to {out} ({kind}).", err=out == "-")
    return 0


@export.command("audit")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True,
                                                      allow_dash=True),
              help="File to write; - for standard output.")
@database_option
def export_audit(out: str, database_url: str) -> int:
    """The event log as a hash chain (JSON Lines); check it with `python -m ledger_audit`."""
    from ledger.audit import records
    from ledger_audit import GENESIS, canonical, head_record

    count, last = 0, GENESIS
    with ledger_services(database_url) as services, click.open_file(
            out, "w", encoding="utf-8") as sink:
        for _, record in records(services.ledger):
            sink.write(canonical(record) + "\n")
            count, last = record["seq"], record["hash"]
        sink.write(canonical(head_record(count, last)) + "\n")
    click.echo(f"Wrote {count} records to {out}; head {last}.", err=out == "-")
    return 0


def write_out(out: str, text: str) -> None:
    """Write an export to the file, or to standard output for `-`."""
    if out == "-":
        sys.stdout.write(text)
    else:
        with open(out, "w", encoding="utf-8", newline="") as sink:
            sink.write(text)
