"""gunicorn settings for the credit ledger (WSGI, database-bound).

gthread workers, with request heads collected by the worker's poller (api/worker.py): a
connection whose headers have not fully arrived waits there, not in a thread, so stalled
clients cannot take every request slot (with `sync` workers, as many half-sent requests as
workers stopped the service; plain gthread only shields connections that send nothing). The
threads of a worker share its Application and engines; both are thread-safe (pools with
locks). In production put a buffering reverse proxy in front (README: nginx).
"""

from __future__ import annotations

import os
from typing import Any

wsgi_app = "api.wsgi:app"
bind = os.environ.get("LEDGER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LEDGER_WORKERS", "2"))
worker_class = "api.worker.HeadFirstWorker"
# SQLite takes one writer at a time per file, and eventsourcing's SQLite recorder lets a
# thread wait only 5 s for its process's writer: fewer threads there.
_SQLITE = os.environ.get("LEDGER_DATABASE_URL", "sqlite").startswith("sqlite")
threads = int(os.environ.get("LEDGER_THREADS", "2" if _SQLITE else "4"))
timeout = 60
keepalive = 5
graceful_timeout = 30
preload_app = False  # each worker builds its Application and engines after fork
control_socket_disable = True
accesslog = os.environ.get("LEDGER_ACCESS_LOG", "-")
errorlog = "-"


def on_starting(server: Any) -> None:
    """Create the event store and read-model tables once, before any worker starts; if the
    database is down, workers start anyway and create them once it is back."""
    from api.outage import create_tables_or_defer
    from api.wiring import create_tables

    create_tables_or_defer(create_tables)
