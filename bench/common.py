"""Shared helpers for the benchmarks: throw-away databases, child processes, tables, JSON.

Every measurement runs in a fresh child process (``python -m bench.X --child ROLE``) so
that each one starts from the same interpreter state and its peak RSS
(``resource.getrusage``) belongs to that measurement alone. The parent alternates the
subject and its baseline round by round and reports medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = os.environ.get("LEDGER_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
CHILD_TIMEOUT = 300.0
RESULT_PREFIX = "BENCH-RESULT "


# --- command line --------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="event store and read models (default: a temporary SQLite file)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL,
                        help="PostgreSQL database in which a temporary schema is created "
                             "(default: %(default)s or $LEDGER_BENCH_POSTGRES_URL)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating subject/baseline rounds; medians are reported")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    # Internal: run one measurement and print its result (used by the parent process).
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)


# --- throw-away databases ------------------------------------------------------------------


@contextmanager
def temp_database(backend: str, pg_url: str = DEFAULT_PG_URL) -> Iterator[str]:
    """Yield a LEDGER_DATABASE_URL for an empty database; remove it afterwards."""
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="ledger-bench-")
        try:
            yield f"sqlite:///{directory}/ledger.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    import psycopg

    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_url}{'&' if '?' in pg_url else '?'}schema={schema}"
    finally:
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- child processes -----------------------------------------------------------------------


def run_child(module: str, role: str, url: str, extra: Sequence[str] = (),
              env: dict[str, str] | None = None, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Run ``python -m module --child role --url url`` and return the JSON it reports."""
    command = [sys.executable, "-m", module, "--child", role, "--url", url, *extra]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=timeout, env={**os.environ, **(env or {})})
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if completed.returncode != 0:
                break
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return result
    raise RuntimeError(f"{module} --child {role} failed (rc {completed.returncode}):\n"
                       f"{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")


def report(result: dict[str, Any]) -> None:
    """The child's last line: its result, with the process's memory figures added."""
    result.setdefault("peak_rss_mib", peak_rss_mib())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- statistics and output -----------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (values need not be sorted)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": percentile(seconds, 50) * 1000, "p95_ms": percentile(seconds, 95) * 1000,
            "p99_ms": percentile(seconds, 99) * 1000, "max_ms": max(seconds, default=0) * 1000}


def ratio(subject: float, baseline: float) -> float:
    return subject / baseline if baseline else float("nan")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def environment(backend: str) -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("eventsourcing", "falcon", "SQLAlchemy", "gunicorn", "psycopg"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu, "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        "loadavg_before": os.getloadavg(), "backend": backend, "versions": versions,
    }
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout
        info["git"] = {"head": head, "changed_paths": len(dirty.splitlines())}
    except (OSError, subprocess.SubprocessError):
        pass
    if backend == "sqlite":
        import sqlite3

        info["sqlite"] = sqlite3.sqlite_version
    return info


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


def postgres_version(pg_url: str) -> str:
    import psycopg

    with psycopg.connect(pg_url, connect_timeout=10) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
