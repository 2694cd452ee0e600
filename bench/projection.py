"""Projection: ``Projector.catch_up`` and ``Projector.rebuild`` vs reading + decoding the log.

One database is seeded with consumption on ``--projects`` funded projects (4 events per
item: the item, two draws and the allocation mirror), then every measurement runs in a
fresh process against it:

Baseline ``decode``:   ``recorder.select_notifications`` in batches of the projector's
                       batch size + ``mapper.to_domain_event`` for each; nothing is written.
Subject  ``catch-up``: the read models are emptied and the tracking position reset (not
                       timed), then ``Projector.catch_up()`` applies every event.
Subject  ``rebuild``:  ``Projector.rebuild()`` (drop, create, replay in one transaction).

Reported: events/s, wall and CPU time, and memory from ``resource.getrusage`` (peak RSS of
the process) and peak minus the RSS just before the timed phase. Run from the repo root:

    python -m bench.projection [--backend postgresql] [--events 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bench.common import (
    add_common_arguments,
    environment,
    median,
    peak_rss_mib,
    postgres_version,
    print_table,
    ratio,
    report,
    rss_mib,
    run_child,
    temp_database,
    write_json,
)

ROLES = ("decode", "catch-up", "rebuild")
BASELINE = "decode"
EVENTS_PER_ITEM = 4
ITEMS_PER_CALL = 50


def seed(url: str, events: int, projects: int) -> dict[str, Any]:
    """Post consumption in batches until the log holds about ``events`` events."""
    from api.server.wiring import build_services
    from bench.seed import ACTOR, current_period, funded_project, item

    services = build_services(url, create_tables=True)
    ledger = services.ledger
    period = current_period()
    funded = [funded_project(ledger, n) for n in range(projects)]
    start = time.perf_counter()
    calls = 0
    while (ledger.recorder.max_notification_id() or 0) < events:
        project_id = funded[calls % projects].project_id
        ledger.post_consumption([item(f"seed-{calls}-{k}", project_id, period)
                                 for k in range(ITEMS_PER_CALL)], ACTOR)
        calls += 1
    total = ledger.recorder.max_notification_id() or 0
    services.close()
    return {"role": "seed", "events": total, "items": calls * ITEMS_PER_CALL,
            "seconds": time.perf_counter() - start}


def child(args: argparse.Namespace) -> None:
    if args.child == "seed":
        report(seed(args.url, args.events, args.projects))
        return
    from sqlalchemy import update

    from api.server.wiring import build_services
    from projections.tables import READ_MODEL_TABLES, metadata, tracking

    services = build_services(args.url)
    projector = services.projector
    if args.child == "catch-up":
        with services.engine.begin() as conn:  # start from an empty read model (not timed)
            metadata.drop_all(conn, tables=READ_MODEL_TABLES)
            metadata.create_all(conn, tables=READ_MODEL_TABLES)
            conn.execute(update(tracking).values(position=0))

    def decode_all() -> int:
        recorder, mapper = services.ledger.recorder, services.ledger.mapper
        position, total = 0, 0
        while notifications := recorder.select_notifications(
                start=position, limit=projector.batch_size, inclusive_of_start=False):
            for notification in notifications:
                mapper.to_domain_event(notification)
            position = notifications[-1].id
            total += len(notifications)
        return total

    work = {"decode": decode_all, "catch-up": projector.catch_up,
            "rebuild": projector.rebuild}[args.child]
    rss_before = rss_mib()
    cpu_start = time.process_time()
    start = time.perf_counter()
    events = work()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    peak = peak_rss_mib()
    position = projector.position()
    services.close()
    report({"role": args.child, "events": events, "seconds": elapsed, "cpu_seconds": cpu,
            "events_per_s": events / elapsed, "rss_before_mib": rss_before,
            "peak_rss_mib": peak, "peak_delta_mib": peak - rss_before,
            "position_after": position, "loadavg_1m": os.getloadavg()[0]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projection", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--events", type=int, default=2_000,
                        help="size of the seeded event log (default %(default)s)")
    parser.add_argument("--projects", type=int, default=20,
                        help="funded projects the consumption is spread over")
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    env_info = environment(args.backend)
    if args.backend == "postgresql":
        env_info["postgresql"] = postgres_version(args.pg_url)
    runs: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    with temp_database(args.backend, args.pg_url) as url:
        seeded = run_child("bench.projection", "seed", url,
                           ["--events", str(args.events), "--projects", str(args.projects)])
        print(f"seeded {seeded['events']} events ({seeded['items']} items) in "
              f"{seeded['seconds']:.1f} s", file=sys.stderr, flush=True)
        for round_no in range(args.rounds):
            order = ROLES if round_no % 2 == 0 else tuple(reversed(ROLES))
            for role in order:
                result = run_child("bench.projection", role, url)
                if result["events"] != seeded["events"]:
                    raise RuntimeError(f"{role} processed {result['events']} events, "
                                       f"expected {seeded['events']}")
                runs[role].append(result)
                print(f"round {round_no + 1} {role:8s} {result['events_per_s']:8.0f} events/s "
                      f"{result['seconds']:6.2f} s", file=sys.stderr, flush=True)

    keys = ("events_per_s", "seconds", "cpu_seconds", "peak_rss_mib", "peak_delta_mib",
            "loadavg_1m")
    summary = {role: {key: median([r[key] for r in results]) for key in keys}
               for role, results in runs.items()}
    base = summary[BASELINE]
    for values in summary.values():
        values["time_ratio"] = ratio(values["seconds"], base["seconds"])
        values["cpu_ratio"] = ratio(values["cpu_seconds"], base["cpu_seconds"])
        values["peak_rss_ratio"] = ratio(values["peak_rss_mib"], base["peak_rss_mib"])
    labels = {"decode": "select+decode (baseline)", "catch-up": "Projector.catch_up",
              "rebuild": "Projector.rebuild"}
    print_table(
        f"Projection of {seeded['events']} events, {args.backend}, median of {args.rounds} "
        "rounds (ratio = subject / baseline)",
        ("subject", "events/s", "wall s", "CPU s", "peak RSS MiB", "RSS growth MiB",
         "time ratio", "CPU ratio", "peak RSS ratio"),
        [(labels[role], v["events_per_s"], v["seconds"], v["cpu_seconds"], v["peak_rss_mib"],
          v["peak_delta_mib"], v["time_ratio"], v["cpu_ratio"], v["peak_rss_ratio"])
         for role, v in summary.items()],
    )
    env_info["loadavg_after"] = os.getloadavg()
    print(f"load average before/after: {env_info['loadavg_before'][0]:.2f} / "
          f"{env_info['loadavg_after'][0]:.2f} (on {env_info['cpus']} CPUs)")
    write_json(args.json, {"benchmark": "projection", "environment": env_info,
                           "settings": {"events": args.events, "projects": args.projects,
                                        "rounds": args.rounds},
                           "seed": seeded, "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
