"""`credit-ledger notify`: the notifier and webhook dispatcher, standalone."""

from __future__ import annotations

import click

from api.cli.base import (
    cli,
    database_option,
    events_in_log,
    ledger_services,
    progress_bar,
    refuse_stale,
)


@cli.command()
@database_option
@click.option("--once", is_flag=True, help="One round (record, remind, deliver what is due), "
              "then exit.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between rounds.")
def notify(database_url: str, once: bool, interval: float) -> int:
    """Record notifications from the event log and deliver webhooks, until stopped."""
    from api.server import notifier
    from notifications.notifier import Notifier

    with ledger_services(database_url) as services:
        refuse_stale(services)
        if once:  # after an import, the whole log: a bar, as `project --once` shows
            follower = Notifier(services.ledger, services.engine)
            with progress_bar("following events", events_in_log(services)
                              - follower.position()) as report:
                follower.catch_up(report)
        notifier.run(services, interval, once, notifier.stop_on_signals())
    return 0
