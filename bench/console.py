"""The console's pages, timed server-side: every request a page makes, summed.

One organisation with ``--projects`` project credits (1,000 by default) and a year of
history (a consumption item per project and month, each month closed), seeded through the
Ledger under a travelling clock. Then each console page is loaded as the browser loads it
(api/resources/console/static/app.js): its HTML shell, the four static files, and the API
calls it makes, each through the real Falcon app in this process (create_app on real
services; no network, so only the service's own work is timed). A page's figure is the sum
of its requests; the target is under 200 ms a page. Run from the repository root:

    python -m bench.console [--projects 1000] [--months 12] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import falcon.testing
import time_machine

from bench.common import (
    DEFAULT_PG_URL,
    environment,
    median,
    percentile,
    print_table,
    temp_database,
    write_json,
)
from bench.seed import ACTOR, ORG_VALUE, item
from ledger.periods import Period
from ledger.terms import Terms

ASSETS = ("uplot/uPlot.min.css", "console.css", "uplot/uPlot.iife.min.js", "app.js")
TARGET_MS = 200.0
CPU = "cpu"  # a load's CPU time in this process (steadier than wall time on a busy box)


def seed(services: Any, projects: int, months: int) -> dict[str, str]:
    """The organisation and its history; returns the uuids the pages are about."""
    ledger = services.ledger
    today = datetime.now(UTC).date()
    first = Period.of(today)
    for _ in range(months):
        first = first.previous()
    start = datetime.combine(first.first_day, datetime.min.time(), UTC) + timedelta(days=2)
    with time_machine.travel(start, tick=True):
        customer = ledger.register_customer("Bench organisation", "bench-organisation", ACTOR)
        credit = ledger.create_customer_credit(customer, ORG_VALUE, Terms(), [], ACTOR)
        project_ids, credit_ids = [], []
        for n in range(projects):
            project = ledger.register_project(f"Project {n:04d}", f"project-{n:04d}",
                                              customer, ACTOR)
            project_ids.append(project)
            credit_ids.append(ledger.create_project_credit(
                project, ORG_VALUE / projects / 2, Terms(), False, ACTOR))
    period = first
    for month in range(months):
        after = period.next()
        moment = datetime.combine(after.first_day, datetime.min.time(), UTC) + timedelta(
            days=2)
        with time_machine.travel(moment, tick=True):
            ledger.post_consumption([item(f"{n}-{period}", project, period,
                                          Decimal(10 + (n + month) % 50))
                                     for n, project in enumerate(project_ids)], ACTOR)
            ledger.close_period(period, ACTOR, [credit])
        services.projector.catch_up()
        print(f"  seeded {period}", file=sys.stderr, flush=True)
        period = after
    token = secrets.token_hex(20)
    ledger.create_user("bench-staff", token, True, False, ACTOR)
    services.projector.catch_up()
    return {"customer": customer.hex, "credit": credit.hex, "project_credit": credit_ids[0].hex,
            "project": project_ids[0].hex, "closed": str(period.previous()),
            "today": str(Period.of(today)), "token": token}


def pages(ids: dict[str, str]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Each page's requests, as app.js makes them: the shell first (its four files are
    added), then its API calls. A statement is fetched when the user picks a month: that
    action is measured on its own line."""
    credit, pc = ids["credit"], ids["project_credit"]
    listing = {"page": "1", "page_size": "20"}
    return {
        "organisations": [("/console/", {}),
                          ("/api/customer-credits/", listing)],
        "organisation": [(f"/console/customers/{ids['customer']}/", {}),
                         ("/api/customer-credits/", {"customer_uuid": ids["customer"]}),
                         (f"/api/customer-credits/{credit}/months/", {"months": "12"})],
        "+ a month's statement chosen": [(f"/api/customer-credits/{credit}/statement/",
                                          {"period": ids["closed"]})],
        "credit": [(f"/console/project-credits/{pc}/", {}),
                   (f"/api/project-credits/{pc}/", {}),
                   (f"/api/project-credits/{pc}/history/", {}),
                   ("/api/consumptions/", {"project_uuid": ids["project"], **listing}),
                   ("/api/credit-transactions/", {"project_credit_uuid": pc, **listing})],
        "periods": [("/console/periods/", {}), ("/api/billing-periods/", {}),
                    ("/api/reconciliation/", {"period": ids["today"]}),
                    ("/api/audit/head/", {})],
    }


def load_page(client: Any, requests: list[tuple[str, dict[str, Any]]],
              headers: dict[str, str]) -> dict[str, float]:
    """Milliseconds per request of one page load (shell, its files, API calls)."""
    shell = requests[0][0].startswith("/console/")
    files: list[tuple[str, dict[str, Any]]] = [
        (f"/console/static/{name}", {}) for name in ASSETS] if shell else []
    found = {}
    cpu = time.process_time()
    for path, params in [*requests[:1], *files, *requests[1:]]:
        started = time.perf_counter()
        result = client.simulate_get(path, params=params,
                                     headers=headers if path.startswith("/api/") else {})
        found[path] = (time.perf_counter() - started) * 1000
        assert result.status_code == 200, (path, result.status_code, result.text[:300])
    found[CPU] = (time.process_time() - cpu) * 1000
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--loads", type=int, default=15, help="page loads measured per page")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args()
    from api.app import create_app
    from api.server.wiring import build_services

    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        try:
            ids = seed(services, args.projects, args.months)
            client = falcon.testing.TestClient(create_app(services))
            headers = {"Authorization": f"Token {ids['token']}"}
            results = {}
            for name, requests in pages(ids).items():
                load_page(client, requests, headers)  # warm-up
                loads = [load_page(client, requests, headers) for _ in range(args.loads)]
                cpus = [load.pop(CPU) for load in loads]
                totals = [sum(load.values()) for load in loads]
                slowest = max(loads[0], key=lambda path: median([load[path] for load in loads]))
                results[name] = {"requests": len(loads[0]), "median_ms": median(totals),
                                 "cpu_ms": median(cpus),
                                 "p95_ms": percentile(totals, 95), "slowest": slowest,
                                 "slowest_ms": median([load[slowest] for load in loads])}
        finally:
            services.close()
    print_table(f"Console pages, {args.projects} projects, {args.months} months "
                f"({args.backend}); target < {TARGET_MS:.0f} ms a page",
                ["page", "requests", "median ms", "p95 ms", "CPU ms", "slowest request",
                 "its ms"],
                [[name, r["requests"], r["median_ms"], r["p95_ms"], r["cpu_ms"], r["slowest"],
                  r["slowest_ms"]] for name, r in results.items()])
    write_json(args.json, {"environment": environment(args.backend), "settings": vars(args),
                           "pages": results})


if __name__ == "__main__":
    main()
