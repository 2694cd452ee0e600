"""Narrow and wide pages on an imported-shaped data set: in-process CPU and wall per request.

Seeds N organisations as ``import waldur`` records them (bench.import_rate's records, each
with one project, an organisation credit and a project credit), projects them, and then
measures through the real Falcon app in-process (no network, no peer): ``GET
/api/project-credits/`` with page_size 1, 10 and 100, retrieve by uuid, the organisation
credits' 100-row page, and ``/health`` as the baseline. It measures twice: as left by the
load (no planner statistics yet, as right after a bulk import) and after
``Projector.analyze()`` (what ``import waldur`` now runs at its end). Figures are the best
of ``--rounds`` rounds of ``--requests`` requests.

    .venv/bin/python -m bench.pages [--organisations 20000] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from typing import Any

from bench.common import DEFAULT_PG_URL, environment, print_table, ratio, temp_database


def seed(url: str, organisations: int) -> None:
    from api.server.wiring import build_services
    from bench.import_rate import record_all, records
    from ledger.importing import Importer

    services = build_services(url, create_tables=True)
    try:
        record_all(Importer(services.ledger, "import:bench"), records(organisations), 1200)
        services.projector.catch_up()
    finally:
        services.close()


def measure(client: Any, path: str, params: dict[str, Any], headers: dict[str, str],
            requests: int, rounds: int) -> tuple[float, float]:
    """Best (CPU ms, wall ms) per request over the rounds."""
    for _ in range(5):
        client.simulate_get(path, params=params, headers=headers)
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            result = client.simulate_get(path, params=params, headers=headers)
            if result.status_code != 200:
                raise RuntimeError(f"GET {path}: {result.status_code} {result.text[:300]}")
        best = min(best, ((time.process_time() - cpu) / requests * 1000,
                          (time.perf_counter() - wall) / requests * 1000))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--organisations", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import falcon.testing

    from api.app import create_app
    from api.server.wiring import build_services

    env_info = environment(args.backend)
    rows = []
    with temp_database(args.backend, args.pg_url) as url:
        seed(url, args.organisations)
        services = build_services(url)
        try:
            token = secrets.token_hex(20)
            services.ledger.create_user("bench-staff", token, True, False, "bench")
            services.projector.catch_up()
            client = falcon.testing.TestClient(create_app(services))
            headers = {"Authorization": f"Token {token}"}
            first = client.simulate_get("/api/project-credits/", params={"page_size": 1},
                                        headers=headers).json[0]["uuid"]
            cases = [("health (baseline)", "/health", {}),
                     ("list page_size=1", "/api/project-credits/", {"page_size": 1}),
                     ("list page_size=10", "/api/project-credits/", {"page_size": 10}),
                     ("list page_size=100", "/api/project-credits/", {"page_size": 100}),
                     ("retrieve by uuid", f"/api/project-credits/{first}/", {}),
                     ("organisation credits page_size=100", "/api/customer-credits/",
                      {"page_size": 100})]
            for state in ("as loaded", "analysed"):
                if state == "analysed":
                    services.projector.analyze()
                for label, path, params in cases:
                    cpu, wall = measure(client, path, params, headers, args.requests,
                                        args.rounds)
                    rows.append((state, label, cpu, wall))
                    print(f"{state:10s} {label:36s} {cpu:6.2f} ms CPU {wall:6.2f} ms wall",
                          file=sys.stderr, flush=True)
        finally:
            services.close()

    base = {state: (cpu, wall) for state, label, cpu, wall in rows if label.startswith("health")}
    ten = {state: (cpu, wall) for state, label, cpu, wall in rows if label.endswith("=10")}
    print_table(
        f"Pages on an imported-shaped data set of {args.organisations:,} organisations, "
        f"in-process, {args.backend}, best of {args.rounds} x {args.requests} requests "
        f"(load average before {env_info['loadavg_before'][0]:.2f})",
        ("statistics", "request", "CPU ms", "wall ms", "CPU / health", "wall / page_size=10"),
        [(state, label, cpu, wall, ratio(cpu, base[state][0]), ratio(wall, ten[state][1]))
         for state, label, cpu, wall in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
