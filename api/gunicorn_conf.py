"""gunicorn settings for the credit ledger (WSGI, database-bound).

gthread workers: a connection whose request has not fully arrived waits in the worker's
poller, not in a thread, so stalled or trickling clients cannot take every request slot
(with `sync` workers, as many half-sent requests as workers stopped the service). The
threads of a worker share its Application and engines; both are thread-safe (pools with
locks). In production put a buffering reverse proxy in front (README: nginx).
"""

from __future__ import annotations

import os
from typing import Any

wsgi_app = "api.wsgi:app"
bind = os.environ.get("LEDGER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LEDGER_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("LEDGER_THREADS", "4"))
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
