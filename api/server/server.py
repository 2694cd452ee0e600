"""Runs the API under gunicorn with the project's settings (`credit-ledger serve`)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.config import KNOWN_SETTINGS

from api.server import gunicorn_conf

# Every gunicorn setting gunicorn_conf defines, found rather than listed: a list kept by
# hand left out `logger_class`, so `serve` formatted gunicorn's own access line on every
# request (38 µs each), which `gunicorn -c gunicorn.conf.py` did not.
SETTINGS = tuple(sorted({setting.name for setting in KNOWN_SETTINGS} & vars(gunicorn_conf).keys()))


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
