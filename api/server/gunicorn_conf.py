"""gunicorn settings for the credit ledger (WSGI, database-bound).

`credit-ledger serve` and `gunicorn -c gunicorn.conf.py` read the same settings:
LEDGER_BIND, LEDGER_WORKERS, LEDGER_ACCESS_LOG, LEDGER_LOG_FORMAT, LEDGER_AUTO_REBUILD,
PROMETHEUS_MULTIPROC_DIR.

gthread workers, with request heads collected by the worker's poller (api/server/worker.py): a
connection whose headers have not fully arrived waits there, not in a thread, so stalled
clients cannot take every request slot (with `sync` workers, as many half-sent requests as
workers stopped the service; plain gthread only shields connections that send nothing). The
threads of a worker share its Application and engines; both are thread-safe (pools with
locks). In production put a buffering reverse proxy in front (README: nginx).
"""

from __future__ import annotations

import os
import re
from typing import Any

wsgi_app = "api.server.wsgi:app"
bind = os.environ.get("LEDGER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LEDGER_WORKERS", "2"))
worker_class = "api.server.worker.HeadFirstWorker"
# SQLite takes one writer at a time per file, and eventsourcing's SQLite recorder lets a
# thread wait only 5 s for its process's writer: fewer threads there.
# A request spends about three times as long in Python as waiting for the database, so more
# threads mostly wait for the GIL: on PostgreSQL at 100k credits (2 cores, 4 connections),
# 2 threads per worker served 4 % more lists than 4 threads, with p99 7.5 ms instead of 10.
threads = int(os.environ.get("LEDGER_THREADS", "2"))
timeout = 60
keepalive = 5
graceful_timeout = 30
preload_app = False  # each worker builds its Application and engines after fork
control_socket_disable = True
accesslog = None  # the app logs one structured line per request (api/server/observe.py)
# ...and gunicorn's own access line is not written:
logger_class = "api.server.worker.QuietAccessLogger"
errorlog = "-"
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"ledger": {"()": "api.server.logs.make_formatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "ledger",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"],
                                   "propagate": False}},
}


def on_starting(server: Any) -> None:
    """Once, in the master, before any worker: metrics directory, tables, version check.

    If the database is down, workers start anyway and create the tables once it is back
    (and a stale read model is then refused with 503 until `credit-ledger rebuild`)."""
    prepare_metrics_directory()
    os.environ["LEDGER_BOUND"] = " ".join(server.cfg.bind)  # /metrics: loopback only?
    from api.server.outage import TABLES_PENDING, create_tables_or_defer
    from api.server.wiring import create_tables

    create_tables_or_defer(create_tables)
    if not os.environ.get(TABLES_PENDING):
        rebuild_if_stale()


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges must not be summed any more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """A metrics directory made for this run goes with it."""
    if made_metrics_directory:
        import shutil

        shutil.rmtree(made_metrics_directory[0], ignore_errors=True)


made_metrics_directory: list[str] = []


METRICS_MARK = ".credit-ledger-metrics"
# prometheus_client's own file names in a multiprocess directory (values.py, mmap_key).
METRICS_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_[0-9]+\.db")


def prepare_metrics_directory() -> None:
    """Workers share their samples through files; a fresh start begins from empty files.

    Only a directory this service made (or found empty) and marked is cleaned, and only of
    prometheus_client's own files: the setting pointed at a data folder must not delete
    anything there. Must run before prometheus_client is imported in the master, since
    workers inherit it.
    """
    import tempfile
    from pathlib import Path

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        folder = tempfile.mkdtemp(prefix="credit-ledger-metrics-")
        made_metrics_directory.append(folder)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if (path / METRICS_MARK).exists():
        for stale in path.iterdir():
            if METRICS_FILE.fullmatch(stale.name):
                stale.unlink()
    elif any(path.iterdir()):
        raise SystemExit(f"PROMETHEUS_MULTIPROC_DIR={folder} holds files credit-ledger did "
                         "not put there; name an empty or new directory for the metrics.")
    else:
        (path / METRICS_MARK).write_text("metric files of credit-ledger workers; emptied "
                                         "of them at each start\n")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def rebuild_if_stale() -> None:
    """LEDGER_AUTO_REBUILD=1: bring stale read models up to this release before serving."""
    if os.environ.get("LEDGER_AUTO_REBUILD", "") not in ("1", "true", "yes"):
        return
    import logging

    from api.server.wiring import build_services
    from projections import schema_version

    services = build_services()
    try:
        problem = schema_version.problem(services.engine)
        if problem:
            logging.getLogger("credit_ledger").warning("rebuilding stale read models: %s",
                                                       problem)
            total = services.projector.rebuild()
            logging.getLogger("credit_ledger").warning("rebuilt from %d events", total)
    finally:
        services.close()
