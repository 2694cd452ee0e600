"""Settling months: close-period and reopen-period over every organisation."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from multiprocessing.synchronize import Event
from uuid import UUID

import click

from api.cli.base import (
    CLI_ACTOR,
    T,
    cli,
    database_option,
    ledger_services,
    period_argument,
    progress_bar,
    refuse_stale,
)
from api.server.wiring import Services, build_services
from ledger.periods import Period


@cli.command("close-period")
@click.argument("period", metavar="YYYY-MM", required=False)
@click.option("--through", metavar="YYYY-MM",
              help="Close every open month up to this one, in order.")
@database_option
def close_period(period: str | None, through: str | None, database_url: str) -> int:
    """Settle a billing period (floors, linear terms, expiry) and close it."""
    if (period is None) == (through is None):
        raise click.UsageError("Give either a period or --through YYYY-MM.")
    with ledger_services(database_url) as services:
        refuse_stale(services)
        last = started_period(services, period or through or "")
        upcoming = services.ledger.next_to_close()
        months = [last] if period else list(months_between(upcoming, last))
        if not months:
            hint = (f"the next month to close is {upcoming}" if upcoming
                    else "nothing is recorded yet")
            click.echo(f"No month through {last} is open to close; nothing changed ({hint}).")
        for month in months:
            result = for_each_organisation(services, f"settling {month}", partial(
                services.ledger.close_period, month, CLI_ACTOR))
            if result.already_closed:
                click.echo(f"Billing period {month} was already closed; nothing changed.")
            else:
                click.echo(f"Closed billing period {month}: settled "
                           f"{result.customers_settled} customers.")
    return 0


def months_between(first: Period | None, last: Period) -> Iterator[Period]:
    """``first`` to ``last``, both included (none when ``first`` is None or later)."""
    month = first
    while month is not None and month <= last:
        yield month
        month = month.next()


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
    from api.http.fields import FieldError, period_field

    today = Period.of(services.today())
    try:
        return period_field(today)(text)
    except FieldError as error:
        if not closing:
            raise click.ClickException(" ".join(error.messages)) from None
        upcoming = services.ledger.next_to_close()
        hint = (f" The next period to close is {upcoming}."
                if upcoming is not None and upcoming <= today else "")
        raise click.ClickException(" ".join(error.messages) + hint) from None


def for_each_organisation(services: Services, label: str,
                          command: Callable[[list[UUID], Callable[[int], None]], T]) -> T:
    """A settlement command over every organisation credit, on caught-up read models, with
    a progress bar; the read models catch up with what it recorded."""
    services.projector.catch_up()
    credit_ids = customer_credit_ids(services)
    with progress_bar(label, len(credit_ids)) as report, \
            projecting_alongside(services, len(credit_ids)):
        result = command(credit_ids, report)
    services.projector.catch_up()
    return result


PROJECT_ALONGSIDE_FROM = 2000  # organisations: below, a second process costs more than it saves


@contextmanager
def projecting_alongside(services: Services, organisations: int) -> Iterator[None]:
    """On PostgreSQL, a second process catches the read models up while this one settles,
    so the close is done when its last organisation is (issue 18: at 100,000 organisations
    projecting afterwards took longer than settling). The projector's row lock makes the
    two catch-ups share the work exactly once; on SQLite a second writer would only wait."""
    if organisations < PROJECT_ALONGSIDE_FROM or services.engine.dialect.name != "postgresql":
        yield
        return
    context = multiprocessing.get_context("spawn")  # engines are built after the fork
    done = context.Event()
    follower = context.Process(target=follow_log, args=(services.url, done), daemon=True)
    follower.start()
    try:
        yield
    finally:
        done.set()
        follower.join()
        if follower.exitcode:
            click.echo(f"The read-model follower stopped (exit code {follower.exitcode}); "
                       "catching up here instead.", err=True)


def follow_log(database_url: str, done: Event) -> None:
    """Catch the read models up until `done` is set (in the second process)."""
    services = build_services(database_url)
    try:
        while not done.is_set():
            if not services.projector.catch_up():
                done.wait(0.2)
    finally:
        services.close()


def customer_credit_ids(services: Services) -> list[UUID]:
    from sqlalchemy import false, select

    from projections.tables import customer_credits

    with services.engine.connect() as conn:
        rows = conn.execute(select(customer_credits.c.uuid)
                            .where(customer_credits.c.deleted == false())
                            .order_by(customer_credits.c.created))
        return [UUID(row[0]) for row in rows]
