"""gunicorn settings for the credit ledger (WSGI, database-bound)."""

from __future__ import annotations

import os
from typing import Any

wsgi_app = "api.wsgi:app"
bind = os.environ.get("LEDGER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LEDGER_WORKERS", "2"))
worker_class = "sync"
timeout = 60
graceful_timeout = 30
preload_app = False  # each worker builds its Application and engines after fork
control_socket_disable = True
accesslog = os.environ.get("LEDGER_ACCESS_LOG", "-")
errorlog = "-"


def on_starting(server: Any) -> None:
    """Create the event store and read-model tables once, before any worker starts."""
    from api.wiring import create_tables

    create_tables()
