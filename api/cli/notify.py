"""`credit-ledger notify`: the notifier and webhook dispatcher, standalone."""

from __future__ import annotations

import click

from api.cli.base import cli, database_option, ledger_services, refuse_stale


@cli.command()
@database_option
@click.option("--once", is_flag=True, help="One round (record, remind, deliver what is due), "
              "then exit.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between rounds.")
def notify(database_url: str, once: bool, interval: float) -> int:
    """Record notifications from the event log and deliver webhooks, until stopped."""
    from api.server import notifier

    with ledger_services(database_url) as services:
        refuse_stale(services)
        notifier.run(services, interval, once, notifier.stop_on_signals())
    return 0
