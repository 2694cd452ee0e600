"""The `credit-ledger` command (click): serve, project, rebuild, verify, close-period,
reopen-period, export, import, users, roles.

Every command takes `--database-url` (default: $LEDGER_DATABASE_URL, else a SQLite file in
the user's data directory, the same one the server uses, whatever the current directory).
A missing SQLite file is an error, except for `serve` and `users create`, which create it
and say so. Long work shows a progress bar on stderr; results go to stdout.

To add a command: write a function decorated with `@cli.command()` (or a group with
`@cli.group()`, as `export` and `users` are), take `@database_option`, and open the
database with `with ledger_services(url) as services:`; errors raised inside become one
line and exit 1 in `main`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import click

from api.server.wiring import (
    Services,
    build_services,
    create_tables,
    default_database_url,
    parse_database_url,
    redact,
)
from ledger.errors import LedgerError
from ledger.periods import Period

T = TypeVar("T")
CLI_ACTOR = "cli"


def database_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "cannot use this database" (driver, pool, store)."""
    import psycopg
    import psycopg_pool
    from eventsourcing.persistence import PersistenceError
    from sqlalchemy.exc import SQLAlchemyError

    return (sqlite3.Error, psycopg.Error, psycopg_pool.PoolTimeout, PersistenceError,
            SQLAlchemyError)


database_option = click.option(
    "--database-url", envvar="LEDGER_DATABASE_URL", default=default_database_url,
    show_default="$LEDGER_DATABASE_URL, else a SQLite file in the user data directory",
    help="Where events and read models live: sqlite:///PATH or "
         "postgresql://USER:PW@HOST:PORT/DB[?schema=NAME].")


@contextmanager
def database_boundary(url: str) -> Iterator[None]:
    """A database that cannot be used is one line naming it, not a driver traceback."""
    try:
        yield
    except database_errors() as error:
        reason = re.sub(r"^\([\w.]+\) ", "", str(error).strip()).splitlines() or [
            type(error).__name__]
        raise click.ClickException(
            f"Cannot use the database {redact(url)}: {reason[0]}") from None


def to_stderr(message: str) -> None:
    click.echo(message, err=True)


def open_database(url: str, create: bool = False,
                  say: Callable[[str], None] = to_stderr) -> None:
    """Refuse a missing SQLite file (or create it when `create`, and `say` so); make
    tables."""
    sqlite_path = parse_database_url(url).sqlite_path
    missing = sqlite_path is not None and not Path(sqlite_path).exists()
    if missing and not create:
        raise click.ClickException(
            f"No database at {sqlite_path}. Pass --database-url or set LEDGER_DATABASE_URL; "
            "`credit-ledger users create`, `import waldur` or `serve` create a new one.")
    with database_boundary(url):
        create_tables(url)
    if missing:
        say(f"Created database {sqlite_path}.")


@contextmanager
def ledger_services(url: str, create: bool = False) -> Iterator[Services]:
    """The services on an existing database (or a new one when `create`), closed after."""
    open_database(url, create)
    with database_boundary(url):
        services = build_services(url)
        try:
            yield services
        finally:
            services.close()


def refuse_stale(services: Services) -> None:
    """Every command but `rebuild` needs read models built by this release."""
    from projections import schema_version

    problem = schema_version.problem(services.engine)
    if problem:
        raise click.ClickException(problem)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar on stderr with count, percentage and time left; yields report(done)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn(), TextColumn("left"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=max(total, 0))

        def report(done: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield report
        bar.update(task, completed=max(total, 0), total=max(total, 0))


def events_in_log(services: Services) -> int:
    return int(services.ledger.recorder.max_notification_id() or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("credit-ledger"), "--version", "-V",
                      prog_name="credit-ledger", message="%(prog)s %(version)s")
def cli() -> None:
    """credit-ledger: an event-sourced credit ledger serving Waldur's credits API."""


@cli.command()
@database_option
@click.option("--bind", envvar="LEDGER_BIND", default="127.0.0.1:8000", show_default=True,
              help="Address to listen on, HOST:PORT (env LEDGER_BIND, as `gunicorn -c`).")
@click.option("--host", help="Listen on this host instead of --bind's.")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port instead of "
              "--bind's.")
@click.option("--workers", envvar="LEDGER_WORKERS", type=click.IntRange(1), default=2,
              show_default=True, help="gunicorn worker processes (env LEDGER_WORKERS).")
def serve(database_url: str, bind: str, host: str | None, port: int | None,
          workers: int) -> int:
    """Run the API under gunicorn (creates the database if it does not exist)."""
    os.environ["LEDGER_DATABASE_URL"] = database_url  # the settings and workers read it
    from api.server.server import serve as run_server

    say = startup_line()
    open_database(database_url, create=True, say=say)
    bind_host, _, bind_port = bind.rpartition(":")
    address = f"{host or bind_host or '127.0.0.1'}:{port or bind_port or 8000}"
    say(f"Serving {redact(database_url)} on http://{address}/")
    run_server(address, workers)
    return 0


def startup_line() -> Callable[[str], None]:
    """How `serve` reports before gunicorn logs: a log record in JSON log mode (one format
    on stderr for log collectors), else a line for the person at the terminal."""
    from api.server.logs import configure_logging, log_format

    if log_format() != "json":
        return to_stderr
    configure_logging()
    return logging.getLogger("credit_ledger").info


@cli.command()
@database_option
@click.option("--once", is_flag=True, help="Catch up once and exit instead of following.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="Seconds between polls for new events.")
def project(database_url: str, once: bool, interval: float) -> int:
    """Run the projector: keep the read models caught up (for several API hosts)."""
    with ledger_services(database_url) as services:
        refuse_stale(services)
        while True:
            behind = events_in_log(services) - services.projector.position()
            if behind > 0 or once:
                with progress_bar("projecting events", behind) as report:
                    applied = services.projector.catch_up(report)
                if once:
                    click.echo(f"Projected {applied} events; position "
                               f"{services.projector.position()}.")
                    return 0
            time.sleep(interval)


@cli.command()
@database_option
def rebuild(database_url: str) -> int:
    """Drop every read model and replay the whole event log into it."""
    with ledger_services(database_url) as services, \
            progress_bar("replaying events", events_in_log(services)) as report:
        total = services.projector.rebuild(report)
    click.echo(f"Rebuilt every read model from {total} events.")
    return 0


@cli.command()
@database_option
def verify(database_url: str) -> int:
    """Replay every event into scratch read models and compare; exit 1 on drift."""
    from projections.verify import verify as verify_read_models

    with ledger_services(database_url) as services:
        refuse_stale(services)
        with progress_bar("replaying events", services.projector.position()) as report:
            result = verify_read_models(services.ledger, services.engine, report)
    for difference in result.differences:
        click.echo(str(difference))
    if result.differences:
        click.echo(f"Drift: {len(result.differences)} differences between the read models "
                   f"and a replay of {result.position} events.")
        return 1
    click.echo(f"Read models match a replay of {result.position} events "
               f"({result.rows_compared} rows compared).")
    return 0


period_argument = click.argument("period", metavar="YYYY-MM")


@cli.command("close-period")
@period_argument
@database_option
def close_period(period: str, database_url: str) -> int:
    """Settle a billing period (floors, linear terms, expiry) and close it."""
    with ledger_services(database_url) as services:
        refuse_stale(services)
        parsed = started_period(services, period)
        result = for_each_organisation(services, f"settling {parsed}", partial(
            services.ledger.close_period, parsed, CLI_ACTOR))
    if result.already_closed:
        click.echo(f"Billing period {parsed} was already closed; nothing changed.")
    else:
        click.echo(f"Closed billing period {parsed}: settled {result.customers_settled} "
                   "customers.")
    return 0


@cli.command("reopen-period")
@period_argument
@database_option
def reopen_period(period: str, database_url: str) -> int:
    """Re-open the latest closed period, reversing its settlement with new events."""
    with ledger_services(database_url) as services:
        refuse_stale(services)
        parsed = Period.parse(period)
        reopened = for_each_organisation(services, f"re-opening {parsed}", partial(
            services.ledger.reopen_period, parsed, CLI_ACTOR))
    click.echo(f"Re-opened billing period {parsed}: reversed the settlement of {reopened} "
               "customers.")
    return 0


def started_period(services: Services, text: str, closing: bool = True) -> Period:
    """The API's rule: a period that has not started cannot be closed (nor reported); when
    closing, name the next one."""
    from api.http.fields import FieldError
    from api.resources.consumptions import closed_periods, period_field

    today = Period.of(services.today())
    try:
        return period_field(today)(text)
    except FieldError as error:
        if not closing:
            raise click.ClickException(" ".join(error.messages)) from None
        with services.engine.connect() as conn:
            closed = sorted(Period.parse(p) for p in closed_periods(conn))
        upcoming = closed[-1].next() if closed else today.previous()
        hint = f" The next period to close is {upcoming}." if upcoming <= today else ""
        raise click.ClickException(" ".join(error.messages) + hint) from None


def for_each_organisation(services: Services, label: str,
                          command: Callable[[list[UUID], Callable[[int], None]], T]) -> T:
    """A settlement command over every organisation credit, on caught-up read models, with
    a progress bar; the read models catch up with what it recorded."""
    services.projector.catch_up()
    credit_ids = customer_credit_ids(services)
    with progress_bar(label, len(credit_ids)) as report:
        result = command(credit_ids, report)
    services.projector.catch_up()
    return result


def customer_credit_ids(services: Services) -> list[UUID]:
    from sqlalchemy import false, select

    from projections.tables import customer_credits

    with services.engine.connect() as conn:
        rows = conn.execute(select(customer_credits.c.uuid)
                            .where(customer_credits.c.deleted == false())
                            .order_by(customer_credits.c.created))
        return [UUID(row[0]) for row in rows]


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

    with ledger_services(database_url) as services:
        refuse_stale(services)
        parsed = started_period(services, period, closing=False)
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


@cli.group("import")
def import_group() -> None:
    """Copy data into the ledger from another system."""


@import_group.command("waldur")
@click.option("--url", required=True, help="Base URL of a Waldur (or any server speaking its "
              "credits API), e.g. https://waldur.example.org.")
@click.option("--token", required=True, envvar="WALDUR_TOKEN",
              help="A staff API token of that server (env WALDUR_TOKEN).")
@database_option
def import_waldur(url: str, token: str, database_url: str) -> int:
    """Offerings, customers, projects and credits, keeping their uuids; a re-run records
    nothing and prints what differs. Exit 1 on rejected or differing records, 2 when the
    source cannot be read. A SQLite file that does not exist is created (and named)."""
    from api import importer

    with ledger_services(database_url, create=True) as services:
        refuse_stale(services)
        return importer.run(services, url, token)


@cli.group()
def users() -> None:
    """Manage API users and their tokens."""


@users.command("create")
@click.argument("name")
@click.option("--staff", is_flag=True, help="Staff: may do everything.")
@click.option("--support", is_flag=True, help="Support: may read everything.")
@database_option
def users_create(name: str, staff: bool, support: bool, database_url: str) -> int:
    """Create a user and print its API token (the last line). Creates the database."""
    if staff and support:
        raise click.UsageError("Choose at most one of --staff and --support.")
    token = secrets.token_hex(20)
    with ledger_services(database_url, create=True) as services:
        refuse_stale(services)
        user_id = services.ledger.create_user(name, token, staff, support, CLI_ACTOR)
        services.projector.catch_up()
    kind = "staff" if staff else "support" if support else "user"
    click.echo(f"Created {kind} {name} ({user_id.hex}). API token:")
    click.echo(token)
    return 0


@users.command("list")
@database_option
def users_list(database_url: str) -> int:
    """List users: name, kind, whether active, and their roles."""
    from sqlalchemy import select

    from projections.tables import user_roles
    from projections.tables import users as users_table

    with ledger_services(database_url) as services:
        refuse_stale(services)
        services.projector.catch_up()
        with services.engine.connect() as conn:
            rows = conn.execute(select(users_table).order_by(users_table.c.username)).all()
            roles = conn.execute(select(user_roles)).all()
    click.echo(f"{'NAME':<24} {'KIND':<8} {'ACTIVE':<7} ROLES")
    for row in rows:
        kind = "staff" if row.is_staff else "support" if row.is_support else "user"
        held = [f"{r.scope}:{r.scope_uuid}:{r.role}" for r in roles if r.user_uuid == row.uuid]
        click.echo(f"{row.username:<24} {kind:<8} {'yes' if row.is_active else 'no':<7} "
                   f"{', '.join(held) or '-'}")
    return 0


@users.command("rotate-token")
@click.argument("name")
@database_option
def users_rotate_token(name: str, database_url: str) -> int:
    """Give a user a new API token (the last line); the old one stops working at once."""
    token = secrets.token_hex(20)
    with ledger_services(database_url) as services:
        refuse_stale(services)
        services.ledger.rotate_token(name, token, CLI_ACTOR)
        services.projector.catch_up()
    click.echo(f"Rotated the API token of {name}; the old token no longer works. New token:")
    click.echo(token)
    return 0


@users.command("deactivate")
@click.argument("name")
@database_option
def users_deactivate(name: str, database_url: str) -> int:
    """Deactivate a user: its token stops working for good (the history stays)."""
    with ledger_services(database_url) as services:
        refuse_stale(services)
        changed = services.ledger.deactivate_user(name, CLI_ACTOR)
        services.projector.catch_up()
    click.echo(f"Deactivated {name}." if changed else f"{name} was already deactivated.")
    return 0


@cli.group()
def roles() -> None:
    """Grant or revoke customer and project roles."""


def _role_command(action: str) -> None:
    past = {"grant": "Granted", "revoke": "Revoked"}[action]

    @roles.command(action, help=f"{action.capitalize()} ROLE on a customer or project "
                                f"{'to' if action == 'grant' else 'from'} user NAME. Customer "
                                "roles: owner, support, manager; project roles: admin, "
                                "manager, member.")
    @click.argument("name")
    @click.argument("role")
    @click.option("--customer", metavar="UUID", help="The customer the role is on.")
    @click.option("--project", metavar="UUID", help="The project the role is on.")
    @database_option
    def command(name: str, role: str, customer: str | None, project: str | None,
                database_url: str) -> int:
        if (customer is None) == (project is None):
            raise click.UsageError("Give exactly one of --customer and --project.")
        scope, scope_id = ("customer", customer) if customer else ("project", project)
        assert scope_id is not None
        with ledger_services(database_url) as services:
            refuse_stale(services)
            change = (services.ledger.grant_role if action == "grant"
                      else services.ledger.revoke_role)
            change(name, scope, UUID(scope_id), role, CLI_ACTOR)
            services.projector.catch_up()
        click.echo(f"{past} {scope} role {role} of {scope_id} "
                   f"{'to' if action == 'grant' else 'from'} {name}.")
        return 0


_role_command("grant")
_role_command("revoke")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; every expected failure ends with one line on stderr and exit 1 (130
    for Ctrl-C); only a bug shows a traceback."""
    try:
        result: Any = cli.main(args=list(argv) if argv is not None else None,
                               prog_name="credit-ledger", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return int(stop.exit_code)
    except click.ClickException as error:
        error.show()
        return int(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        return 130
    except (LedgerError, ValueError) as error:
        click.ClickException(str(error)).show()
        return 1
    except OSError as error:  # e.g. an export to a folder that does not exist
        click.ClickException(f"{error.strerror or error}: {error.filename or ''}").show()
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
