"""Runs the API under gunicorn with the project's settings (`credit-ledger serve`)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from api.server import gunicorn_conf

SETTINGS = ("wsgi_app", "bind", "workers", "worker_class", "threads", "timeout", "keepalive",
            "graceful_timeout", "preload_app", "control_socket_disable", "accesslog", "errorlog",
            "logconfig_dict", "on_starting", "child_exit", "on_exit")


class LedgerServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's application, configured from api/server/gunicorn_conf.py plus CLI overrides."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides
        super().__init__()

    def load_config(self) -> None:
        for name in SETTINGS:
            self.cfg.set(name, getattr(gunicorn_conf, name))
        for name, value in self.overrides.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """Called in each worker after fork: the services are built there."""
        from api.server.wsgi import app

        return app


def serve(bind: str, workers: int) -> None:
    LedgerServer({"bind": bind, "workers": workers}).run()
