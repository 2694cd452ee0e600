"""Write path: ``Ledger.post_consumption`` vs bare eventsourcing saves, one item and batches.

One item per call:
Subject   ``ledger``:   post_consumption([one item]) to a project that has a project credit
                        under an organisation credit (each call records 3 events: the item
                        and one draw on each credit, in one atomic save).
Baseline  ``bare``:     a minimal Aggregate, one ``@event`` command, ``app.save()`` per call,
                        in an Application with the same persistence settings (the env that
                        api.server.wiring derives from the database URL).
Reference ``bare-get``: the same, but each call first reloads the aggregate with
                        ``repository.get`` (snapshot every 100 events, as the Ledger does).

Batches (1,000 items over 100 projects, 10 projects per organisation):
Subject   ``ledger-batch``: post_consumption(1,000 items), item k for project k % 100.
Baseline  ``bare-batch``:   1,000 new minimal aggregates (one event each) in one ``save()``.

``--imported N`` runs the batch roles on an imported-shaped data set instead of a fresh one:
N organisations, each with one project, an organisation credit and a project credit,
recorded as ``import waldur`` records them (bench.import_rate's records, not analysed, as
right after an import), before the measured process starts; ``ledger-batch`` then posts over
100 of those projects, one per organisation, spread over the set.

Each measurement runs in a fresh process on a fresh database for ``--seconds`` after a
warm-up; rounds alternate the order. Run from the repository root:

    python -m bench.write [--backend postgresql] [--seconds 3] [--rounds 3] [--json PATH]
                          [--roles ledger-batch,bare-batch] [--profile [ROLE]]
                          [--imported N]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from bench.common import (
    add_common_arguments,
    environment,
    latency_summary,
    median,
    postgres_version,
    print_table,
    ratio,
    report,
    rss_mib,
    run_child,
    temp_database,
    write_json,
)

ROLES = ("bare", "bare-get", "ledger", "bare-batch", "ledger-batch")
BASELINE = {"bare": "bare", "bare-get": "bare", "ledger": "bare",
            "bare-batch": "bare-batch", "ledger-batch": "bare-batch"}
WARMUP_CALLS = 30
BATCH_ITEMS = 1000
BATCH_PROJECTS = 100
PROJECTS_PER_ORG = 10


def bare_application(url: str) -> Any:
    """A minimal Application on the persistence settings the service would use for ``url``."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    from api.server.wiring import parse_database_url

    class Counter(Aggregate):
        @event("Started")
        def __init__(self) -> None:
            self.total = Decimal(0)

        @event("Bumped")
        def bump(self, amount: Decimal) -> None:
            self.total += amount

    class Bare(Application[UUID]):
        name = "Bare"
        snapshotting_intervals = {Counter: 100}

    env = {**parse_database_url(url).event_store_env, "CREATE_TABLE": "y"}
    return Bare(env=env), Counter


@dataclass
class Timing:
    latencies: list[float]
    elapsed: float
    cpu_seconds: float
    profile: str


def timed_loop(call: Any, seconds: float, max_calls: int, profile: bool) -> Timing:
    """Call ``call(i)`` for ``seconds`` (at most ``max_calls`` times); per-call latencies."""
    profiler = cProfile.Profile() if profile else None
    latencies: list[float] = []
    if profiler:
        profiler.enable()
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while len(latencies) < max_calls:
        began = time.perf_counter()
        call(len(latencies))
        ended = time.perf_counter()
        latencies.append(ended - began)
        if ended >= deadline:
            break
    elapsed = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    text = ""
    if profiler:
        profiler.disable()
        out = io.StringIO()
        order = os.environ.get("BENCH_PROFILE_SORT", "cumulative")  # e.g. tottime
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(35)
        text = out.getvalue()
    return Timing(latencies, elapsed, cpu_seconds, text)


def seed_imported(url: str, organisations: int) -> list[UUID]:
    """Record an imported-shaped data set (as ``import waldur`` does) with services of its
    own, closed before measuring, so the measured process starts cold like a fresh server;
    returns 100 of its projects, spread over the set."""
    from api.server.wiring import build_services
    from bench.import_rate import record_all, records
    from ledger.importing import Importer

    kinds = records(organisations)
    services = build_services(url, create_tables=True)
    try:
        record_all(Importer(services.ledger, "import:bench"), kinds, 1200)
    finally:
        services.close()
    projects = [record.uuid for record in kinds[2]]
    return projects[::max(1, len(projects) // BATCH_PROJECTS)][:BATCH_PROJECTS]


def child(args: argparse.Namespace) -> None:
    role, url = args.child, args.url
    imported = (seed_imported(url, args.imported)
                if args.imported and role.startswith("ledger") else None)
    if role.startswith("ledger"):
        call, max_id, close = ledger_subject(role, url, imported)
    else:
        call, max_id, close = bare_subject(role, url)
    items_per_call = BATCH_ITEMS if role.endswith("batch") else 1
    for i in range(WARMUP_CALLS if items_per_call == 1 else 2):
        call(-1 - i)
    rss_before = rss_mib()
    events_before = max_id() or 0
    timing = timed_loop(call, args.seconds, args.max_calls, args.profile)
    events = (max_id() or 0) - events_before
    close()
    calls = len(timing.latencies)
    report({
        "role": role, "calls": calls, "seconds": timing.elapsed,
        "calls_per_s": calls / timing.elapsed,
        "items_per_s": calls * items_per_call / timing.elapsed,
        "events_per_s": events / timing.elapsed,
        "events_per_call": events / calls,
        "cpu_ms_per_call": timing.cpu_seconds / calls * 1000,
        **latency_summary(timing.latencies),
        "rss_before_mib": rss_before, "rss_after_mib": rss_mib(),
        "loadavg_1m": os.getloadavg()[0],
        "profile": timing.profile,
    })


def ledger_subject(role: str, url: str,
                   imported: list[UUID] | None = None) -> tuple[Any, Any, Any]:
    """post_consumption of one item, or of 1,000 items over 100 projects, per call (the
    imported data set's projects if given)."""
    from api.server.wiring import build_services
    from bench.seed import ACTOR, current_period, funded_project, funded_projects, item

    if interval := os.environ.get("BENCH_SNAPSHOT_INTERVAL"):
        # What-if only (see README): the service's own interval is 100.
        from ledger.application import Ledger
        from ledger.credits import CustomerCredit, ProjectCredit

        Ledger.snapshotting_intervals = {CustomerCredit: int(interval),
                                         ProjectCredit: int(interval)}
    services = build_services(url, create_tables=imported is None)
    ledger = services.ledger
    period = current_period()
    if role == "ledger":
        funded = funded_project(ledger)

        def call(i: int) -> None:
            ledger.post_consumption([item(f"item-{i}", funded.project_id, period)], ACTOR)
    else:
        projects = imported or funded_projects(ledger, BATCH_PROJECTS, PROJECTS_PER_ORG)

        def call(i: int) -> None:
            ledger.post_consumption(
                [item(f"item-{i}-{k}", projects[k % BATCH_PROJECTS], period)
                 for k in range(BATCH_ITEMS)], ACTOR)

    return call, ledger.recorder.max_notification_id, services.close


def bare_subject(role: str, url: str) -> tuple[Any, Any, Any]:
    app, counter_class = bare_application(url)
    counter = counter_class()
    app.save(counter)
    amount = Decimal("0.01")
    if role == "bare":
        def call(i: int) -> None:
            counter.bump(amount)
            app.save(counter)
    elif role == "bare-get":
        def call(i: int) -> None:
            aggregate = app.repository.get(counter.id)
            aggregate.bump(amount)
            app.save(aggregate)
    else:
        def call(i: int) -> None:
            app.save(*(counter_class() for _ in range(BATCH_ITEMS)))

    return call, app.recorder.max_notification_id, app.close


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timed duration of each measurement (default %(default)s)")
    parser.add_argument("--max-calls", type=int, default=100_000)
    parser.add_argument("--roles", default=",".join(ROLES),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--profile", nargs="?", const="ledger", choices=ROLES, metavar="ROLE",
                        help="print a cProfile of one run of ROLE (default ledger) instead "
                             "of benchmarking")
    parser.add_argument("--child-env", action="append", default=[], metavar="KEY=VALUE",
                        help="what-if: extra environment for the measured processes, e.g. "
                             "LEDGER_AGGREGATE_CACHE_MAXSIZE=1000, PYTHONOPTIMIZE=1, "
                             "BENCH_SNAPSHOT_INTERVAL=20")
    parser.add_argument("--imported", type=int, default=0, metavar="N",
                        help="batch roles on an imported-shaped data set of N organisations "
                             "(2N credits), seeded before each measured run (not timed)")
    args = parser.parse_args(argv)
    if args.imported:
        args.roles = ",".join(r for r in args.roles.split(",") if r.endswith("batch"))
    child_env = dict(item.split("=", 1) for item in args.child_env)
    if args.child:
        child(args)
        return 0

    env_info = environment(args.backend)
    if args.backend == "postgresql":
        env_info["postgresql"] = postgres_version(args.pg_url)
    if args.profile:
        with temp_database(args.backend, args.pg_url) as url:
            result = run_child("bench.write", args.profile, url,
                               ["--seconds", str(args.seconds), "--profile",
                                "--imported", str(args.imported)], child_env)
        print(result["profile"])
        return 0

    roles = [role for role in ROLES if role in args.roles.split(",")]
    roles += [BASELINE[role] for role in roles if BASELINE[role] not in roles]
    runs: dict[str, list[dict[str, Any]]] = {role: [] for role in roles}
    for round_no in range(args.rounds):
        order = roles if round_no % 2 == 0 else list(reversed(roles))
        for role in order:
            with temp_database(args.backend, args.pg_url) as url:
                result = run_child("bench.write", role, url,
                                   ["--seconds", str(args.seconds),
                                    "--max-calls", str(args.max_calls),
                                    "--imported", str(args.imported)], child_env)
            result.pop("profile", None)
            runs[role].append(result)
            print(f"round {round_no + 1} {role:12s} {result['items_per_s']:8.0f} items/s",
                  file=sys.stderr, flush=True)

    summary = {role: {key: median([r[key] for r in results])
                      for key in ("calls_per_s", "items_per_s", "events_per_s",
                                  "events_per_call", "cpu_ms_per_call", "p50_ms", "p95_ms",
                                  "p99_ms", "peak_rss_mib", "loadavg_1m")}
               for role, results in runs.items()}
    for role, values in summary.items():
        base = summary[BASELINE[role]]
        values["throughput_ratio"] = ratio(values["items_per_s"], base["items_per_s"])
        values["p50_ratio"] = ratio(values["p50_ms"], base["p50_ms"])
        values["cpu_ratio"] = ratio(values["cpu_ms_per_call"], base["cpu_ms_per_call"])
    labels = {"bare": "bare save (baseline)", "bare-get": "bare get+save",
              "ledger": "Ledger.post_consumption", "bare-batch": "bare 1,000-event save",
              "ledger-batch": "post_consumption 1,000"}
    what_if = f" {child_env}" if child_env else ""
    if args.imported:
        what_if += f", imported data set of {args.imported:,} organisations"
    print_table(
        f"Write path, {args.backend}{what_if}, median of {args.rounds} rounds x "
        f"{args.seconds:g} s (ratio = subject / its baseline: bare save, or bare 1,000-event "
        "save for batches)",
        ("subject", "items/s", "events/s", "ev/call", "p50 ms", "p95 ms", "p99 ms",
         "CPU ms/call", "peak RSS MiB", "items/s ratio", "p50 ratio", "CPU ratio"),
        [(labels[role], v["items_per_s"], v["events_per_s"], v["events_per_call"],
          v["p50_ms"], v["p95_ms"], v["p99_ms"], v["cpu_ms_per_call"], v["peak_rss_mib"],
          v["throughput_ratio"], v["p50_ratio"], v["cpu_ratio"])
         for role, v in summary.items()],
    )
    for role, what in (("ledger", "one item per call"), ("ledger-batch", "1,000-item batches")):
        if role in summary:
            values, base = summary[role], summary[BASELINE[role]]
            print(f"\nLedger.post_consumption, {what}: {values['items_per_s']:.0f} items/s, "
                  f"{values['throughput_ratio']:.3f}x the {labels[BASELINE[role]]} rate "
                  f"({ratio(values['events_per_s'], base['events_per_s']):.2f}x per event).")
    env_info["loadavg_after"] = os.getloadavg()
    print(f"load average before/after: {env_info['loadavg_before'][0]:.2f} / "
          f"{env_info['loadavg_after'][0]:.2f} (on {env_info['cpus']} CPUs)")
    write_json(args.json, {"benchmark": "write", "environment": env_info,
                           "settings": {"seconds": args.seconds, "rounds": args.rounds,
                                        "imported": args.imported,
                                        "roles": roles, "child_env": child_env},
                           "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
