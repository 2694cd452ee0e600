"""The `credit-ledger` command (click): serve, project, notify, rebuild, verify, close-period,
reopen-period, export, import, users, roles — one module per group of commands, all added
to the `cli` group of api/cli/base.py.

Every command takes `--database-url` (default: $LEDGER_DATABASE_URL, else a SQLite file in
the user's data directory, the same one the server uses, whatever the current directory).
A missing SQLite file is an error, except for `serve` and `users create`, which create it
and say so. Long work shows a progress bar on stderr; results go to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; every expected failure ends with one line on stderr and exit 1 (130
    for Ctrl-C); only a bug shows a traceback. The commands are imported in here, so a
    Ctrl-C while they load (the first second of a busy machine) ends the same way."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def _run(argv: Sequence[str] | None) -> int:
    import click

    from api.cli.commands import cli
    from ledger.errors import LedgerError

    try:
        result: Any = cli.main(args=list(argv) if argv is not None else None,
                               prog_name="credit-ledger", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return int(stop.exit_code)
    except click.ClickException as error:
        error.show()
        return int(error.exit_code)
    except click.Abort:
        raise KeyboardInterrupt from None
    except (LedgerError, ValueError) as error:
        click.ClickException(str(error)).show()
        return 1
    except OSError as error:  # e.g. an export to a folder that does not exist
        click.ClickException(f"{error.strerror or error}: {error.filename or ''}").show()
        return 1
    return int(result or 0)
