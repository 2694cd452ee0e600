"""Running the service: serve, the standalone projector, rebuild and verify."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import click

from api.cli.base import (
    cli,
    database_option,
    events_in_log,
    ledger_services,
    open_database,
    progress_bar,
    refuse_stale,
    to_stderr,
)
from api.server.wiring import redact


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
    from api.server import notifier
    from api.server.server import serve as run_server

    say = startup_line()
    open_database(database_url, create=True, say=say)
    bind_host, _, bind_port = bind.rpartition(":")
    address = f"{host or bind_host or '127.0.0.1'}:{port or bind_port or 8000}"
    say(f"Serving {redact(database_url)} on http://{address}/")
    dispatcher = notifier.start_beside_server(database_url)
    try:
        run_server(address, workers)
    finally:
        notifier.stop(dispatcher)
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
    for warning in result.warnings:
        click.echo(f"Warning: {warning}.")
    if result.differences:
        click.echo(f"Drift: {len(result.differences)} differences between the read models "
                   f"and a replay of {result.position} events.")
        return 1
    click.echo(f"Read models match a replay of {result.position} events "
               f"({result.rows_compared} rows compared).")
    return 0
