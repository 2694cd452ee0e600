"""gunicorn's entry point: each worker imports this after fork and builds its own services."""

from __future__ import annotations

from api.app import create_app
from api.server.logs import configure_logging
from api.server.wiring import build_services

configure_logging()
app = create_app(build_services())
