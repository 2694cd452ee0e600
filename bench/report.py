"""Finance reads at scale: a month's reconciliation, as-of lists, a statement, usage.

Seeds N organisations, each with a project, an organisation credit and a project credit
(2N credits, saved in bulk as bench.scale does), posts `--items` consumption items for
this month through the Ledger, projects everything, then times through the real Falcon
app (in-process, no network), each request `--rounds` times (median wall and CPU s):

- GET /api/reconciliation/?period=this month (JSON, and CSV) over every credit;
- GET /api/reconciliation/usage/?period=this month;
- GET /api/project-credits/?as_of=now&page_size=10 and the same for customer credits
  (every credit's state at the moment, then one page), and an as-of retrieve;
- GET /api/customer-credits/{uuid}/statement/?period=this month.

All of them read indexed read-model tables (credit_versions, credit_transactions); none
replays the log. Run from the repository root:

    python -m bench.report [--organisations 50000] [--items 20000] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from bench.common import add_common_arguments, environment, print_table, temp_database, write_json
from bench.scale import seed

ACTOR = "bench"
POST_CHUNK = 500


def timed(client: Any, path: str, headers: dict[str, str], rounds: int) -> dict[str, float]:
    """Median wall and CPU seconds of `rounds` GETs (after one warm-up)."""
    client.simulate_get(path, headers=headers)
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        result = client.simulate_get(path, headers=headers)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if result.status_code != 200:
            raise RuntimeError(f"GET {path}: {result.status_code} {result.text[:300]}")
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "bytes": len(result.content)}


def post_items(services: Any, count: int, period: Any) -> None:
    """`count` items, one per project in turn, posted in batches of POST_CHUNK."""
    from ledger.posting import ConsumptionInput
    from projections.tables import project_credits

    with services.engine.connect() as conn:
        projects = [row.project_uuid for row in conn.execute(
            project_credits.select().limit(count))]
    for start in range(0, count, POST_CHUNK):
        services.ledger.post_consumption([
            ConsumptionInput(item_id=f"report-{n}", project_id=UUID(projects[n % len(projects)]),
                             offering_id=None, amount=Decimal("1.25"), period=period)
            for n in range(start, min(count, start + POST_CHUNK))], ACTOR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--organisations", type=int, default=50000)
    parser.add_argument("--items", type=int, default=20000)
    args = parser.parse_args(argv)

    import falcon.testing

    from api.app import create_app
    from api.server.wiring import build_services
    from ledger.periods import Period

    period = Period.of(datetime.now(UTC).date())
    results: dict[str, Any] = {}
    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        try:
            token = secrets.token_hex(20)
            services.ledger.create_user("bench", token, True, False, ACTOR)
            began = time.perf_counter()
            seed(services.ledger, 0, args.organisations)
            services.projector.catch_up()
            post_items(services, args.items, period)
            services.projector.catch_up()
            print(f"seeded and projected in {time.perf_counter() - began:.0f} s",
                  file=sys.stderr, flush=True)
            client = falcon.testing.TestClient(create_app(services))
            headers = {"Authorization": f"Token {token}"}
            moment = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            org = client.simulate_get("/api/customer-credits/", params={"page_size": 1},
                                      headers=headers).json[0]["uuid"]
            paths = {
                "reconciliation JSON": f"/api/reconciliation/?period={period}",
                "reconciliation CSV": f"/api/reconciliation/csv/?period={period}",
                "usage by billing period": f"/api/reconciliation/usage/?period={period}",
                "as-of project credits page": f"/api/project-credits/?as_of={moment}"
                                              "&page_size=10",
                "as-of customer credits page": f"/api/customer-credits/?as_of={moment}"
                                               "&page_size=10",
                "as-of retrieve": f"/api/customer-credits/{org}/?as_of={moment}",
                "statement": f"/api/customer-credits/{org}/statement/?period={period}",
            }
            for name, path in paths.items():
                results[name] = timed(client, path, headers, args.rounds)
                print(f"{name}: {results[name]['wall_s']:.2f} s", file=sys.stderr, flush=True)
        finally:
            services.close()
    credits = 2 * args.organisations
    loadavg = os.getloadavg()
    print_table(f"Finance reads, {args.backend}, {credits} credits, {args.items} items this "
                f"month; load average {loadavg[0]:.2f} {loadavg[1]:.2f} {loadavg[2]:.2f}",
                ["request", "wall s (median)", "CPU s (median)", "response bytes"],
                [[name, f"{r['wall_s']:.3f}", f"{r['cpu_s']:.3f}", r["bytes"]]
                 for name, r in results.items()])
    env_info = environment(args.backend)
    env_info["loadavg_after"] = loadavg
    write_json(args.json, {"benchmark": "report", "environment": env_info,
                           "settings": {"credits": credits, "items": args.items,
                                        "rounds": args.rounds},
                           "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
