"""Read side vs data size: GET /api/project-credits/ as this month's consumption grows.

The real Falcon app (``create_app`` on real services; no network, so only the service's
own work is timed) lists ``page_size=10`` of ``--projects`` funded project credits after
0, then more, consumption items have been posted this month (through the Ledger, then
projected). The baseline is the same request with no consumption posted; GET /health at
each size is shown for reference. Run from the repository root:

    python -m bench.read_scaling [--steps 0,1000,3000] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_PG_URL,
    environment,
    latency_summary,
    postgres_version,
    print_table,
    ratio,
    temp_database,
    write_json,
)

LIST = "/api/project-credits/"
ITEMS_PER_CALL = 100


def timed_requests(client: Any, path: str, count: int, **kwargs: Any) -> dict[str, float]:
    """Wall-clock percentiles and mean CPU time per request (robust on a busy machine)."""
    for _ in range(10):
        client.simulate_get(path, **kwargs)
    latencies = []
    cpu_start = time.process_time()
    for _ in range(count):
        began = time.perf_counter()
        result = client.simulate_get(path, **kwargs)
        latencies.append(time.perf_counter() - began)
        if result.status_code != 200:
            raise RuntimeError(f"GET {path}: {result.status_code} {result.text[:300]}")
    cpu_ms = (time.process_time() - cpu_start) / count * 1000
    return {**latency_summary(latencies), "cpu_ms": cpu_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--steps", default="0,1000,3000",
                        help="consumption items posted this month at each measurement")
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per step")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    steps = sorted(int(step) for step in args.steps.split(","))

    import falcon.testing

    from api.app import create_app
    from api.server.wiring import build_services
    from bench.seed import ACTOR, current_period, funded_project, item

    env_info = environment(args.backend)
    if args.backend == "postgresql":
        env_info["postgresql"] = postgres_version(args.pg_url)
    rows: list[dict[str, Any]] = []
    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        try:
            token = secrets.token_hex(20)
            services.ledger.create_user("bench-staff", token, True, False, ACTOR)
            funded = [funded_project(services.ledger, n) for n in range(args.projects)]
            services.projector.catch_up()
            client = falcon.testing.TestClient(create_app(services))
            headers = {"Authorization": f"Token {token}"}
            period, posted = current_period(), 0
            for step in steps:
                began = time.perf_counter()
                while posted < step:  # spread evenly: item n goes to project n % projects
                    size = min(ITEMS_PER_CALL, step - posted)
                    services.ledger.post_consumption(
                        [item(f"scale-{n}", funded[n % len(funded)].project_id, period)
                         for n in range(posted, posted + size)], ACTOR)
                    posted += size
                projected = services.projector.catch_up()
                print(f"{posted} items posted and {projected} events projected in "
                      f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
                listed = timed_requests(client, LIST, args.requests,
                                        params={"page_size": 10}, headers=headers)
                health = timed_requests(client, "/health", args.requests)
                rows.append({"items": posted, "list": listed, "health": health})
        finally:
            services.close()

    base = rows[0]["list"]
    for row in rows:
        row["list_p50_ratio_to_empty"] = ratio(row["list"]["p50_ms"], base["p50_ms"])
        row["list_cpu_ratio_to_empty"] = ratio(row["list"]["cpu_ms"], base["cpu_ms"])
        row["list_cpu_ratio_to_health"] = ratio(row["list"]["cpu_ms"], row["health"]["cpu_ms"])
    print_table(
        f"GET {LIST}?page_size=10 ({args.projects} project credits) vs consumption items this "
        f"month, in-process, {args.backend} (ratio = subject / baseline)",
        ("items this month", "items/project", "list p50 ms", "list CPU ms", "health CPU ms",
         "p50 ratio to 0 items", "CPU ratio to 0 items", "CPU ratio to /health"),
        [(row["items"], row["items"] // args.projects, row["list"]["p50_ms"],
          row["list"]["cpu_ms"], row["health"]["cpu_ms"], row["list_p50_ratio_to_empty"],
          row["list_cpu_ratio_to_empty"], row["list_cpu_ratio_to_health"]) for row in rows],
    )
    env_info["loadavg_after"] = os.getloadavg()
    write_json(args.json, {"benchmark": "read_scaling", "environment": env_info,
                           "settings": {"steps": steps, "projects": args.projects,
                                        "requests": args.requests},
                           "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
