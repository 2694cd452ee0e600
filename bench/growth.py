"""Reads and writes as the data set grows: 10k, 100k and 1M credits in one run (issue 18).

Seeds organisations in steps with `bench.scale.seed` (each: a project, an organisation
credit and a project credit, 7 events), catches the read models up, and at each size
measures through the real Falcon app in this process (no network):

- reads: every list, filter, count and retrieve `bench.scale` times, and a 100-row page:
  CPU ms per request (wall in brackets);
- writes: `POST /api/consumptions/` of one item, and of 1,000 items over 100 projects
  spread over the set, each answered once the read models hold it: CPU ms per item;
- the catch-up of each step's seed: events/s.

The last column divides the largest size's figure by the smallest's: flat is about 1,
logarithmic a small constant per tenfold. CPU time is the steadier figure on a shared
box; on PostgreSQL the server's own time is only in the wall time.

    python -m bench.growth --backend postgresql [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any

from bench.common import add_common_arguments, environment, print_table, temp_database, write_json
from bench.scale import list_costs, seed, staff_client

SPREAD = 100  # projects a batch's items go to
BATCH = 1000
SINGLE_POSTS = 100


def write_costs(client: Any, headers: dict[str, str], project_urls: list[str], period: str,
                serial: itertools.count[int], batches: int) -> dict[str, float]:
    """CPU (and wall) ms per item: single-item posts, then 1,000-item batches."""

    def post(count: int) -> None:
        body = [{"id": f"growth-{next(serial)}", "project": project_urls[n % len(project_urls)],
                 "amount": "0.01", "period": period} for n in range(count)]
        result = client.simulate_post("/api/consumptions/", json=body, headers=headers)
        assert result.status_code == 201, result.text[:300]

    costs: dict[str, float] = {}
    for name, size, calls in (("POST 1 item", 1, SINGLE_POSTS),
                              (f"POST {BATCH} items over {SPREAD} projects", BATCH, batches)):
        post(size)  # warm-up
        began, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            post(size)
        costs[name] = (time.process_time() - began) / (calls * size) * 1000
        costs[name + " wall"] = (time.perf_counter() - wall) / (calls * size) * 1000
    return costs


def spread_projects(services: Any, count: int) -> list[str]:
    """`count` project links spread over the whole set (uuids are random)."""
    from sqlalchemy import select

    from projections.tables import projects

    with services.engine.connect() as conn:
        rows = conn.execute(select(projects.c.uuid).order_by(projects.c.uuid).limit(count))
        return [f"/api/projects/{row.uuid}/" for row in rows]


def cell(figures: dict[str, float], name: str) -> str:
    if name + " wall" in figures:
        return f"{figures[name]:.2f} ({figures[name + ' wall']:.2f})"
    return f"{figures[name]:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="project credits (and as many organisations) at each step")
    parser.add_argument("--requests", type=int, default=200, help="per read and size")
    parser.add_argument("--batches", type=int, default=5, help="1,000-item posts per size")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]

    from api.server.wiring import build_services
    from bench.seed import current_period

    steps: dict[int, dict[str, float]] = {}
    serial = itertools.count()
    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        client, headers = staff_client(services)
        seeded = 0
        for size in sizes:
            began = time.perf_counter()
            seed(services.ledger, seeded, size)
            seeded_s = time.perf_counter() - began
            began = time.perf_counter()
            events = services.projector.catch_up()
            figures = {"seed s": seeded_s, "catch-up events/s": events / (time.perf_counter()
                                                                          - began)}
            services.projector.analyze()
            seeded = size
            figures.update(list_costs(client, headers, args.requests, page_of_100=True))
            figures.update(write_costs(client, headers, spread_projects(services, SPREAD),
                                       str(current_period()), serial, args.batches))
            steps[size] = figures
            print(f"{size} credits: seeded in {seeded_s:.0f} s, caught up at "
                  f"{figures['catch-up events/s']:.0f} events/s", file=sys.stderr, flush=True)
        services.close()

    first, last = steps[sizes[0]], steps[sizes[-1]]
    names = [name for name in first if not name.endswith(" wall") and name != "seed s"]
    print_table(f"Growth, {args.backend}: CPU ms per request or item (wall ms)",
                ["figure", *(f"{size:,} credits" for size in sizes),
                 f"{sizes[-1]:,} / {sizes[0]:,}"],
                [[name, *(cell(steps[size], name) for size in sizes),
                  f"{last[name] / first[name]:.2f}"] for name in names])
    write_json(args.json, {"benchmark": "growth", "environment": environment(args.backend),
                           "sizes": sizes, "steps": {str(k): v for k, v in steps.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
