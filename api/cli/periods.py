"""Settling months: close-period and reopen-period over every organisation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
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
from api.server.wiring import Services
from ledger.periods import Period


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


def started_period(services: Services, text: str) -> Period:
    """The API's rule: a period that has not started cannot be closed; name the next one."""
    from api.http.fields import FieldError
    from api.resources.consumptions import closed_periods, period_field

    today = Period.of(services.today())
    try:
        return period_field(today)(text)
    except FieldError as error:
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
