"""Projection throughput and list cost as the data set grows to 100,000 credits.

Seeds N organisations, each with a project, an organisation credit and a project credit,
by saving the domain's own aggregates in bulk (7 events per credit), then measures, in
this one process:

- catch-up: the projector applying every event after the seed (events/s), against the
  baseline of reading and decoding the same notifications without projecting them;
- rebuild: the same log replayed into shadow tables and swapped in (events/s);
- list cost: `GET /api/project-credits/` (page_size=10, `o=-value`, `project_name=`,
  `customer_uuid=`), `HEAD` and retrieve through the real Falcon app, at a small size and
  at N, as CPU ms per request; the ratio N/small shows whether cost grows with the data.

Run from the repository root:

    python -m bench.scale [--credits 100000] [--small 100] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from decimal import Decimal
from typing import Any

from bench.common import (
    add_common_arguments,
    environment,
    print_table,
    ratio,
    rss_mib,
    temp_database,
    write_json,
)

ACTOR = "bench"
SAVE_CHUNK = 500


def seed(ledger: Any, start: int, stop: int) -> None:
    """Organisations start..stop-1, each funded with one project credit, saved in bulk.

    Every tenth pays a minimal-consumption floor of 50 when a month closes.
    """
    from ledger.credits import CustomerCredit, ProjectCredit
    from ledger.directory import Customer, Project
    from ledger.terms import Terms

    plain = Terms().as_kwargs()
    floored = Terms(expected_consumption=Decimal(50)).as_kwargs()
    pending: list[Any] = []
    for n in range(start, stop):
        terms = floored if n % 10 == 0 else plain
        customer = Customer(name=f"Customer {n:06d}", slug=f"customer-{n:06d}", actor=ACTOR)
        project = Project(name=f"Project {n:06d}", slug=f"project-{n:06d}",
                          customer_id=customer.id, actor=ACTOR)
        org = CustomerCredit(customer_id=customer.id, value=Decimal(10000 + n % 1000),
                             terms=terms, offering_ids=[], actor=ACTOR)
        customer.attach_credit(org.id, ACTOR)
        credit = ProjectCredit(project_id=project.id, customer_id=customer.id,
                               value=Decimal((n * 7919) % 1000000) / 100, terms=terms,
                               mark_unused_credit_as_spent_on_project_termination=False,
                               actor=ACTOR)
        project.attach_credit(credit.id, ACTOR)
        org.sync_allocation(credit, ACTOR)
        pending += [customer, project, org, credit]
        if len(pending) >= SAVE_CHUNK:
            ledger.save(*pending)
            pending = []
    if pending:
        ledger.save(*pending)


def decode_only(services: Any, start: int) -> int:
    """Baseline: read and decode the notifications, project nothing."""
    app, position, done = services.ledger, start, 0
    while batch := app.recorder.select_notifications(start=position, limit=1000,
                                                      inclusive_of_start=False):
        for notification in batch:
            app.mapper.to_domain_event(notification)
        position, done = batch[-1].id, done + len(batch)
    return done


def timed(label: str, work: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - began
    print(f"{label}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds, result


def list_costs(client: Any, headers: dict[str, str], requests: int,
               page_of_100: bool = False) -> dict[str, float]:
    """CPU ms per request for each read the targets name (and a 100-row page if asked)."""
    first = client.simulate_get("/api/project-credits/", headers=headers,
                                params={"page_size": 1}).json[0]
    paths = {
        "list page_size=10": ("GET", "/api/project-credits/?page_size=10"),
        "list o=-value": ("GET", "/api/project-credits/?o=-value&page_size=10"),
        # the same ten credits (Project 000000-000009) at every size: a growing table, not
        # a growing result (0999, the side-by-side's query, matches none of 100 credits)
        "list project_name=": ("GET", "/api/project-credits/?project_name=Project%2000000"),
        "list customer_uuid=": ("GET", f"/api/project-credits/?customer_uuid="
                                       f"{first['customer_uuid']}"),
        "HEAD count": ("HEAD", "/api/project-credits/"),
        "retrieve": ("GET", f"/api/project-credits/{first['uuid']}/"),
    }
    if page_of_100:
        paths["list page_size=100"] = ("GET", "/api/project-credits/?page_size=100")
    costs = {}
    for name, (method, path) in paths.items():
        for _ in range(5):
            client.simulate_request(method, path, headers=headers)
        began = time.process_time()
        wall = time.perf_counter()
        for _ in range(requests):
            result = client.simulate_request(method, path, headers=headers)
            assert result.status_code == 200, (path, result.status_code, result.text[:200])
        costs[name] = (time.process_time() - began) / requests * 1000
        costs[name + " wall"] = (time.perf_counter() - wall) / requests * 1000
    return costs


def staff_client(services: Any) -> tuple[Any, dict[str, str]]:
    """The real Falcon app in-process, and a staff user's headers."""
    import falcon.testing

    from api.app import create_app

    token = secrets.token_hex(20)
    services.ledger.create_user("bench", token, True, False, ACTOR)
    return falcon.testing.TestClient(create_app(services)), {"Authorization": f"Token {token}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--credits", type=int, default=100000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)

    from api.server.wiring import build_services

    results: dict[str, Any] = {}
    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        client, headers = staff_client(services)

        seed(services.ledger, 0, args.small)
        services.projector.catch_up()
        small = list_costs(client, headers, args.requests)

        start = services.projector.position()
        seconds, _ = timed(f"seed {args.credits - args.small} credits",
                           lambda: seed(services.ledger, args.small, args.credits))
        seeded = (services.ledger.recorder.max_notification_id() or 0) - start
        results["seed events/s"] = seeded / seconds
        decode_s, events = timed("decode only", lambda: decode_only(services, start))
        catch_s, applied = timed("catch-up", services.projector.catch_up)
        assert applied == events, (applied, events)
        rebuild_s, replayed = timed("rebuild", services.projector.rebuild)
        large = list_costs(client, headers, args.requests)
        rss = rss_mib()
        services.close()

    results.update({
        "events after seed": events, "decode events/s": events / decode_s,
        "catch-up events/s": events / catch_s, "rebuild events replayed": replayed,
        "rebuild events/s": replayed / rebuild_s, "rss MiB": rss,
        "small": small, "large": large,
    })
    print_table(f"Projection, {args.backend}, {events} events",
                ["what", "events/s", "ratio to decode only"],
                [["decode only (baseline)", f"{events / decode_s:.0f}", "1.00"],
                 ["catch-up", f"{events / catch_s:.0f}", f"{ratio(decode_s, catch_s):.2f}"],
                 ["rebuild", f"{replayed / rebuild_s:.0f}",
                  f"{ratio(decode_s * replayed / events, rebuild_s):.2f}"]])
    print_table(f"Read cost, {args.backend}: CPU ms per request (wall ms)",
                ["request", f"{args.small} credits", f"{args.credits} credits",
                 "ratio large/small (CPU)"],
                [[name, f"{small[name]:.2f} ({small[name + ' wall']:.2f})",
                  f"{large[name]:.2f} ({large[name + ' wall']:.2f})",
                  f"{large[name] / small[name]:.2f}"]
                 for name in small if not name.endswith(" wall")])
    results["environment"] = environment(args.backend)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
