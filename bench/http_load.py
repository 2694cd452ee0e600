"""HTTP: a real gunicorn (``credit-ledger serve``) on a free loopback port, a bounded client.

The database (a temporary SQLite file by default) is seeded with a staff user and
``--projects`` funded projects (organisation credit + project credit each). Then
``credit-ledger serve --workers N`` is started and a Python client (threads, one
``http.client`` connection each, fixed request counts, per-request timeouts) measures:

Baseline ``health``: GET /health (no auth; note that every request, this one included,
                     first runs the projector's cheap "anything new?" check).
Subject  ``list``:   GET /api/project-credits/?page_size=10 as staff.
Subject  ``post``:   POST /api/consumptions/ with one new item (201), as staff.

Rounds alternate the order; medians of req/s and latency percentiles are reported with
their ratio to /health. The server is stopped at the end (SIGTERM, then SIGKILL after a
bounded wait). Run from the repository root:

    python -m bench.http_load [--workers 2] [--threads 4] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    environment,
    latency_summary,
    median,
    postgres_version,
    print_table,
    ratio,
    temp_database,
    write_json,
)

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
LIST_PATH = "/api/project-credits/?page_size=10"

Request = tuple[str, str, bytes | None]  # method, path, body


# --- setup ---------------------------------------------------------------------------------


def seed(url: str, projects: int) -> dict[str, Any]:
    """A staff user and funded projects, projected so the API can see them."""
    import secrets

    from api.server.wiring import build_services
    from bench.seed import ACTOR, funded_project

    services = build_services(url, create_tables=True)
    try:
        token = secrets.token_hex(20)
        services.ledger.create_user("bench-staff", token, True, False, ACTOR)
        funded = [funded_project(services.ledger, n) for n in range(projects)]
        services.projector.catch_up()
        return {"token": token, "project_ids": [f.project_id.hex for f in funded]}
    finally:
        services.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_command() -> list[str]:
    script = Path(sys.executable).with_name("credit-ledger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def worker_memory(master_pid: int) -> list[dict[str, float]]:
    """Peak (VmHWM) and current (VmRSS) resident memory of the server's worker processes."""
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    except OSError:
        return []
    found = []
    for pid in children:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        found.append({"pid": int(pid),
                      "peak_rss_mib": int(fields["VmHWM"].split()[0]) / 1024,
                      "rss_mib": int(fields["VmRSS"].split()[0]) / 1024})
    return found


@contextmanager
def running_server(url: str, workers: int,
                   log_dir: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Start ``credit-ledger serve`` on a free port; always stop it (bounded) afterwards."""
    port = free_port()
    log = (log_dir / "server.log").open("w")
    env = {**os.environ, "LEDGER_DATABASE_URL": url,
           "LEDGER_ACCESS_LOG": str(log_dir / "access.log")}
    process = subprocess.Popen(
        [*server_command(), "serve", "--host", HOST, "--port", str(port),
         "--workers", str(workers)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_healthy(port, process, log_dir / "server.log")
        yield port, process
    finally:
        stop(process)
        log.close()


def wait_until_healthy(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n"
                               f"{log_path.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {START_TIMEOUT} s:\n"
                       f"{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the gunicorn master we started (graceful), SIGKILL its group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


# --- client --------------------------------------------------------------------------------


class Client:
    """One keep-alive connection; reconnects after a transport error."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers = port, headers
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)

    def send(self, request: Request) -> tuple[float, str, bytes]:
        method, path, body = request
        began = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            data = response.read()
            status = str(response.status)
        except (OSError, http.client.HTTPException) as error:
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            data, status = b"", type(error).__name__
        return time.perf_counter() - began, status, data

    def close(self) -> None:
        self.conn.close()


def run_load(port: int, make_request: Callable[[int], Request], count: int, threads: int,
             headers: dict[str, str]) -> dict[str, Any]:
    """Send ``count`` requests from ``threads`` threads; latency per request, status counts."""
    counter = itertools.count()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def worker() -> None:
        client = Client(port, headers)
        mine: list[float] = []
        codes: Counter[str] = Counter()
        while (n := next(counter)) < count:
            seconds, status, _ = client.send(make_request(n))
            codes[status] += 1
            mine.append(seconds)
        client.close()
        with lock:
            latencies.extend(mine)
            statuses.update(codes)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=REQUEST_TIMEOUT * count)
    elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "seconds": elapsed, "req_per_s": len(latencies) / elapsed,
            "statuses": dict(statuses), **latency_summary(latencies)}


def scenarios(seeded: dict[str, Any], period: str) -> dict[str, Callable[[int], Request]]:
    projects = seeded["project_ids"]
    batch = itertools.count()

    def post(n: int) -> Request:
        project = projects[n % len(projects)]
        body = [{"id": f"http-{next(batch)}", "project": f"/api/projects/{project}/",
                 "amount": "0.01", "period": period}]
        return "POST", "/api/consumptions/", json.dumps(body).encode()

    return {
        "health": lambda n: ("GET", "/health", None),
        "list": lambda n: ("GET", LIST_PATH, None),
        "post": post,
    }


def expected_status(role: str) -> str:
    return "201" if role == "post" else "200"


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL database for a temporary "
                        "schema (default: bench.common.DEFAULT_PG_URL)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300,
                        help="GET requests per round and endpoint (default %(default)s)")
    parser.add_argument("--posts", type=int, default=150,
                        help="POST requests per round (default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    from bench.common import DEFAULT_PG_URL
    from bench.seed import current_period

    pg_url = args.pg_url or DEFAULT_PG_URL
    env_info = environment(args.backend)
    if args.backend == "postgresql":
        env_info["postgresql"] = postgres_version(pg_url)
    counts = {"health": args.requests, "list": args.requests, "post": args.posts}
    runs: dict[str, list[dict[str, Any]]] = {role: [] for role in counts}
    with (temp_database(args.backend, pg_url) as url,
          tempfile.TemporaryDirectory(prefix="ledger-bench-http-") as log_dir):
        seeded = seed(url, args.projects)
        make = scenarios(seeded, str(current_period()))
        headers = {"Authorization": f"Token {seeded['token']}",
                   "Content-Type": "application/json"}
        with running_server(url, args.workers, Path(log_dir)) as (port, server):
            print(f"gunicorn on {HOST}:{port} with {args.workers} workers; "
                  f"{args.threads} client threads", file=sys.stderr, flush=True)
            for role in counts:  # warm-up: imports, connections, statement caches
                run_load(port, make[role], 30, args.threads, headers)
            for round_no in range(args.rounds):
                order = list(counts) if round_no % 2 == 0 else list(reversed(counts))
                for role in order:
                    result = run_load(port, make[role], counts[role], args.threads, headers)
                    result["loadavg_1m"] = os.getloadavg()[0]
                    runs[role].append(result)
                    print(f"round {round_no + 1} {role:6s} {result['req_per_s']:7.0f} req/s "
                          f"p50 {result['p50_ms']:6.1f} ms {result['statuses']}",
                          file=sys.stderr, flush=True)
            workers_memory = worker_memory(server.pid)

    summary = {role: {key: median([r[key] for r in results])
                      for key in ("req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                                  "loadavg_1m")}
               for role, results in runs.items()}
    base = summary["health"]
    for role, values in summary.items():
        values["unexpected_statuses"] = sum(
            n for r in runs[role] for code, n in r["statuses"].items()
            if code != expected_status(role))
        values["throughput_ratio"] = ratio(values["req_per_s"], base["req_per_s"])
        values["p50_ratio"] = ratio(values["p50_ms"], base["p50_ms"])
    labels = {"health": "GET /health (baseline)", "list": f"GET {LIST_PATH}",
              "post": "POST /api/consumptions/ (1 item)"}
    print_table(
        f"HTTP, gunicorn {args.workers} sync workers, {args.threads} client threads, "
        f"{args.backend}, median of {args.rounds} rounds (ratio = subject / baseline)",
        ("endpoint", "req/s", "p50 ms", "p95 ms", "p99 ms", "non-2xx", "req/s ratio",
         "p50 ratio"),
        [(labels[role], v["req_per_s"], v["p50_ms"], v["p95_ms"], v["p99_ms"],
          v["unexpected_statuses"], v["throughput_ratio"], v["p50_ratio"])
         for role, v in summary.items()],
    )
    if workers_memory:
        print("gunicorn workers after the run: " + ", ".join(
            f"pid {w['pid']} peak RSS {w['peak_rss_mib']:.1f} MiB (now {w['rss_mib']:.1f})"
            for w in workers_memory))
    env_info["loadavg_after"] = os.getloadavg()
    print(f"load average before/after: {env_info['loadavg_before'][0]:.2f} / "
          f"{env_info['loadavg_after'][0]:.2f} (on {env_info['cpus']} CPUs; the client shares "
          "them with the server)")
    write_json(args.json, {"benchmark": "http", "environment": env_info,
                           "settings": {**{k: v for k, v in vars(args).items()
                                           if k not in ("json", "pg_url")}},
                           "summary": summary, "workers_memory": workers_memory,
                           "runs": runs})
    return 1 if any(v["unexpected_statuses"] for v in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
