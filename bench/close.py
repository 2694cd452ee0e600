"""Closing a month for many organisations, read models included.

Seeds N organisations (each with a project, an organisation credit and a project credit;
every tenth pays a minimal-consumption floor), then times `close_period` for the current
month and the projector catching the read models up with it, in this one process. The
baseline, measured in the same run, is seeding those organisations (a bulk save of 7
events each): closing costs that many times a plain bulk write of the same data.

    python -m bench.close [--organisations 20000] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    add_common_arguments,
    environment,
    print_table,
    temp_database,
    write_json,
)
from bench.scale import seed, timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.close", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--organisations", type=int, default=20000)
    args = parser.parse_args(argv)

    from api.server.wiring import build_services
    from ledger.periods import Period

    period = Period.of(datetime.now(UTC).date())
    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        seed_s, _ = timed(f"seed {args.organisations} organisations",
                          lambda: seed(services.ledger, 0, args.organisations))
        services.projector.catch_up()
        ids = _organisation_credit_ids(services)
        before = services.ledger.recorder.max_notification_id() or 0
        close_s, result = timed(f"close {period}", lambda: services.ledger.close_period(
            period, "bench", ids))
        events = (services.ledger.recorder.max_notification_id() or 0) - before
        project_s, applied = timed("catch-up", services.projector.catch_up)
        assert applied == events and result.customers_settled == args.organisations
        services.close()
    total = close_s + project_s
    print_table(f"close-period, {args.backend}, {args.organisations} organisations, "
                f"{events} events", ["what", "seconds", "ratio to seeding (baseline)"],
                [["seed (baseline)", f"{seed_s:.1f}", "1.00"],
                 ["close_period", f"{close_s:.1f}", f"{close_s / seed_s:.2f}"],
                 ["read models catch up", f"{project_s:.1f}", f"{project_s / seed_s:.2f}"],
                 ["total", f"{total:.1f}", f"{total / seed_s:.2f}"]])
    write_json(args.json, {"organisations": args.organisations, "events": events,
                           "seed_s": seed_s, "close_s": close_s, "catch_up_s": project_s,
                           "environment": environment(args.backend)})
    return 0


def _organisation_credit_ids(services: Any) -> list[Any]:
    from api.cli.periods import customer_credit_ids

    return customer_credit_ids(services)


if __name__ == "__main__":
    sys.exit(main())
