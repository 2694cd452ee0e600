"""What every `credit-ledger` command shares: the database option, opening the database
(a missing SQLite file is an error unless the command creates one), errors as one line,
progress bars on stderr, and the `cli` group the command modules add themselves to.

To add a command: write a function decorated with `@cli.command()` (or a group with
`@cli.group()`) in the module of its group, take `@database_option`, and open the database
with `with ledger_services(url) as services:`; errors raised inside become one line and
exit 1 in `api.cli.main`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import click

from api.server.wiring import (
    Services,
    build_services,
    create_tables,
    default_database_url,
    parse_database_url,
    redact,
)

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


period_argument = click.argument("period", metavar="YYYY-MM")
