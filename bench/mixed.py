"""Writes and reads together, through a real gunicorn, on an imported-shaped data set.

Records N organisations as ``import waldur`` records them (one project, an organisation
credit and a project credit each: ``bench.import_rate.records``), projects them, runs
``ANALYZE`` on PostgreSQL, adds a staff user and serves it with ``credit-ledger serve``
(2 workers). Then, each phase for ``--seconds``:

1. ``health`` (baseline): 8 clients, closed loop, ``GET /health``.
2. ``post``: 8 clients, closed loop, ``POST /api/consumptions/`` of one new item each to a
   random project of the set: items/s and latency (issue 18: p99 < 50 ms).
3. ``read`` (baseline): 4 clients, closed loop, cycling through a page of 10 credits, one
   credit by uuid and one organisation's credits (``customer_uuid=``).
4. ``read+post``: the same readers while a paced poster sends ``--rate`` items/s in batches
   of ``--batch`` over ``--batch-projects`` projects (open loop: each batch has its slot on
   the clock; a usage reporter posts many items per project), and a prober polls
   ``/health`` every 20 ms. Read latency beside phase 3's (issue 18: p99 < 20 ms); the read
   models' lag in seconds (issue 18: p99 < 1 s): the newest event /health reports is noted
   when first seen, and its lag is the time until /health's position reaches it.

The client runs on the same machine as the server and shares its CPUs. Run from the
repository root:

    python -m bench.mixed [--backend postgresql] [--organisations 20000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
from bench.http_load import (
    REQUEST_TIMEOUT,
    Client,
    Request,
    running_server,
    worker_memory,
)

PROBE_INTERVAL = 0.02


@dataclass(frozen=True)
class DataSet:
    token: str
    project_ids: list[str]
    credit_ids: list[str]
    customer_ids: list[str]


def seed(url: str, organisations: int) -> DataSet:
    """The imported-shaped set, its read models caught up and analysed, and a staff token."""
    import secrets

    from api.server.wiring import build_services
    from bench.import_rate import record_all, records
    from bench.seed import ACTOR
    from ledger.importing import Importer

    kinds = records(organisations)
    services = build_services(url, create_tables=True)
    try:
        started = time.perf_counter()
        record_all(Importer(services.ledger, "import:bench"), kinds, 1200)
        recorded = time.perf_counter()
        token = secrets.token_hex(20)
        services.ledger.create_user("bench-staff", token, True, False, ACTOR)
        services.projector.catch_up()
        if url.startswith("postgresql"):
            with services.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
        print(f"seeded {organisations} organisations: recorded in "
              f"{recorded - started:.0f} s, projected in {time.perf_counter() - recorded:.0f} s",
              file=sys.stderr, flush=True)
    finally:
        services.close()
    return DataSet(token, [r.uuid.hex for r in kinds[2]], [r.uuid.hex for r in kinds[4]],
                   [r.uuid.hex for r in kinds[1]])


@dataclass
class Tally:
    """Latencies and status counts of one kind of request, from any number of threads."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    items: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, status: str, items: int = 1) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.statuses[status] += 1
            self.items += items

    def summary(self, elapsed: float) -> dict[str, Any]:
        return {"requests": len(self.latencies), "req_per_s": len(self.latencies) / elapsed,
                "items_per_s": self.items / elapsed, "statuses": dict(self.statuses),
                **latency_summary(self.latencies or [0.0])}


class Workload:
    """The requests each phase sends, over the seeded set."""

    def __init__(self, data: DataSet, period: str) -> None:
        self.data, self.period = data, period
        self.serial = itertools.count()
        self.random = random.Random(18)

    def consumption(self, items: int, projects: int = 1) -> Request:
        """``items`` new items over ``projects`` random projects of the set."""
        chosen = self.random.sample(self.data.project_ids, projects)
        body = [{"id": f"mixed-{next(self.serial)}", "project": f"/api/projects/{project}/",
                 "amount": "0.01", "period": self.period}
                for n in range(items) for project in [chosen[n % projects]]]
        return "POST", "/api/consumptions/", json.dumps(body).encode()

    def read(self, n: int) -> Request:
        if n % 3 == 0:
            return "GET", "/api/project-credits/?page_size=10", None
        if n % 3 == 1:
            credit = self.random.choice(self.data.credit_ids)
            return "GET", f"/api/project-credits/{credit}/", None
        customer = self.random.choice(self.data.customer_ids)
        return "GET", f"/api/project-credits/?customer_uuid={customer}", None


def closed_loop(port: int, headers: dict[str, str], clients: int, deadline: float,
                make: Callable[[int], Request], tally: Tally,
                items: int = 1) -> list[threading.Thread]:
    """``clients`` threads, each sending its next request as soon as the last one answered."""
    counter = itertools.count()

    def run() -> None:
        client = Client(port, headers)
        while time.perf_counter() < deadline:
            seconds, status, _ = client.send(make(next(counter)))
            tally.add(seconds, status, items)
        client.close()

    return [threading.Thread(target=run, daemon=True) for _ in range(clients)]


def paced_poster(port: int, headers: dict[str, str], workload: Workload, rate: int, batch: int,
                 projects: int, deadline: float, tally: Tally) -> list[threading.Thread]:
    """Batches on a fixed schedule, two senders so one slow answer does not delay the next."""
    interval = batch / rate
    slots = itertools.count()
    start = time.perf_counter()
    lock = threading.Lock()

    def run() -> None:
        client = Client(port, headers)
        while True:
            with lock:
                due = start + next(slots) * interval
                request = workload.consumption(batch, projects)
            if due >= deadline:
                break
            time.sleep(max(0.0, due - time.perf_counter()))
            seconds, status, _ = client.send(request)
            tally.add(seconds, status, batch)
        client.close()

    return [threading.Thread(target=run, daemon=True) for _ in range(2)]


def lag_prober(port: int, deadline: float, lags: list[float]) -> threading.Thread:
    """Seconds from first seeing the log's newest event in /health to its position passing it."""

    def run() -> None:
        client = Client(port, {})
        waiting: list[tuple[float, int]] = []
        while time.perf_counter() < deadline:
            _, status, data = client.send(("GET", "/health", None))
            now = time.perf_counter()
            if status == "200":
                body = json.loads(data)
                position, newest = body["position"], body["position"] + body["lag"]
                if not waiting or newest > waiting[-1][1]:
                    waiting.append((now, newest))
                lags.extend(now - seen for seen, event in waiting if event <= position)
                waiting = [(seen, event) for seen, event in waiting if event > position]
            time.sleep(PROBE_INTERVAL)
        client.close()

    return threading.Thread(target=run, daemon=True)


def serving_peak_rss(master_pid: int) -> float:
    """The largest peak RSS of the gunicorn workers (not of the notifier serve spawns)."""
    return max((w["peak_rss_mib"] for w in worker_memory(master_pid)
                if b" notify" not in Path(f"/proc/{w['pid']}/cmdline").read_bytes()
                .replace(b"\0", b" ")), default=0.0)


def run_phase(threads: list[threading.Thread], deadline: float) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()) + 3 * REQUEST_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mixed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--organisations", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--posters", type=int, default=8, help="single-item posting clients")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000, help="items/s posted under reads")
    parser.add_argument("--batch", type=int, default=50, help="items per paced request")
    parser.add_argument("--batch-projects", type=int, default=5,
                        help="projects a paced request's items are spread over")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    from bench.seed import current_period

    env_info = environment(args.backend)
    if args.backend == "postgresql":
        env_info["postgresql"] = postgres_version(args.pg_url)
    results: dict[str, dict[str, Any]] = {}
    lags: list[float] = []
    with (temp_database(args.backend, args.pg_url) as url,
          tempfile.TemporaryDirectory(prefix="ledger-bench-mixed-") as log_dir):
        data = seed(url, args.organisations)
        workload = Workload(data, str(current_period()))
        headers = {"Authorization": f"Token {data.token}", "Content-Type": "application/json"}
        with running_server(url, args.workers, Path(log_dir)) as (port, server):
            def phase(name: str, build: Callable[[float], list[threading.Thread]],
                      tally: Tally, seconds: float = args.seconds) -> None:
                began = time.perf_counter()
                run_phase(build(began + seconds), began + seconds)
                results[name] = {**tally.summary(time.perf_counter() - began),
                                 "loadavg_1m": os.getloadavg()[0],
                                 "workers_peak_rss_mib": serving_peak_rss(server.pid)}
                print(f"{name:10s} {results[name]['req_per_s']:7.0f} req/s "
                      f"p99 {results[name]['p99_ms']:6.1f} ms {results[name]['statuses']}",
                      file=sys.stderr, flush=True)

            warm = Tally()
            phase("warm-up", lambda end: closed_loop(port, headers, args.readers, end,
                                                     workload.read, warm), warm, 3.0)
            health, posts, reads, mixed_reads, paced = Tally(), Tally(), Tally(), Tally(), Tally()
            phase("health", lambda end: closed_loop(
                port, headers, args.posters, end, lambda n: ("GET", "/health", None),
                health), health)
            phase("post", lambda end: closed_loop(
                port, headers, args.posters, end, lambda n: workload.consumption(1), posts),
                posts)
            phase("read", lambda end: closed_loop(
                port, headers, args.readers, end, workload.read, reads), reads)
            phase("read+post", lambda end: [
                *closed_loop(port, headers, args.readers, end, workload.read, mixed_reads),
                *paced_poster(port, headers, workload, args.rate, args.batch,
                               args.batch_projects, end, paced),
                lag_prober(port, end, lags)], mixed_reads)
            results["paced post"] = paced.summary(args.seconds)
    lag = latency_summary(lags or [0.0])
    rows = [
        ("GET /health, 8 clients (baseline)", results["health"], "—"),
        (f"POST 1 item, {args.posters} clients", results["post"], "p99 < 50 ms"),
        (f"reads, {args.readers} clients (baseline)", results["read"], "—"),
        (f"reads while posting {args.rate} items/s", results["read+post"], "p99 < 20 ms"),
        (f"paced posting, {args.batch} items over {args.batch_projects} projects",
         results["paced post"], "—"),
    ]
    print_table(
        f"Mixed load, {args.backend}, {args.organisations} imported organisations, gunicorn "
        f"{args.workers} workers, {args.seconds:.0f} s a phase",
        ("phase", "req/s", "items/s", "p50 ms", "p99 ms", "non-2xx", "goal"),
        [(label, r["req_per_s"], r["items_per_s"], r["p50_ms"], r["p99_ms"],
          sum(n for code, n in r["statuses"].items() if code not in ("200", "201")), goal)
         for label, r, goal in rows])
    post_ratio = ratio(results["post"]["p99_ms"], results["health"]["p99_ms"])
    read_ratio = ratio(results["read+post"]["p99_ms"], results["read"]["p99_ms"])
    print(f"post p99 / health p99: {post_ratio:.2f}; "
          f"reads p99 while posting / alone: {read_ratio:.2f}")
    print(f"read models' lag while posting: p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms,"
          f" max {lag['max_ms']:.0f} ms over {len(lags)} events seen (goal p99 < 1 s)")
    print("gunicorn workers' peak RSS after each phase: " + ", ".join(
        f"{name} {r['workers_peak_rss_mib']:.0f} MiB" for name, r in results.items()
        if "workers_peak_rss_mib" in r))
    write_json(args.json, {"benchmark": "mixed", "environment": env_info,
                           "settings": {k: v for k, v in vars(args).items()
                                        if k not in ("json", "pg_url")},
                           "results": results, "lag": {**lag, "samples": len(lags)}})
    unexpected = sum(n for r in results.values() for code, n in r["statuses"].items()
                     if code not in ("200", "201"))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
