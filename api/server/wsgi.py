"""gunicorn's entry point: each worker imports this after fork and builds its own services."""

from __future__ import annotations

from api.app import create_app
from api.server.logs import configure_logging
from api.server.outage import RetryOnConnectionLoss
from api.server.wiring import build_services

configure_logging()
services = build_services()
app = RetryOnConnectionLoss(create_app(services), services.drop_dead_connections)
