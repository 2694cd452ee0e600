"""Database outages at the edge: fail fast with 503, and create tables once it is back.

A request that finds the database unreachable answers 503 with a DRF-shaped body and
`Retry-After`, instead of a 500 or a hang, and so do the next ones for a few seconds
without trying. Workers boot without the database: if the
tables could not be created at start-up, the first request after the database returns
creates them (idempotent DDL under the advisory lock of `create_tables`).

A lost connection is not an outage: a pooled connection killed under the service (a
restarted proxy, `pg_terminate_backend`) fails the request that uses it. Reads, and
writes that are safe to repeat, are then run once more on fresh connections
(`RetryOnConnectionLoss`), and the gate closes only if the database does not answer a
fresh connection either. No ping before each request: dead connections are found by use.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import falcon
import psycopg
import sqlalchemy.exc
from eventsourcing import persistence

from api.http.auth import PUBLIC_PATHS
from api.http.errors import ApiError
from api.server.eventstore import DatabaseUnreachable

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
RETRY_PAUSE_SECONDS = 0.2
TABLES_PENDING = "LEDGER_TABLES_PENDING"
UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
    persistence.OperationalError,
    persistence.InterfaceError,
    psycopg.OperationalError,
    DatabaseUnreachable,  # the event store's call found no database (eventstore.py)
)


def unavailable() -> ApiError:
    return ApiError(503, {"detail": "The database is unavailable. Try again later."},
                    {"Retry-After": str(RETRY_AFTER_SECONDS)})


class OutageGate:
    """Fails fast while the database is down: after a request found it unreachable, the
    others answer 503 at once for `RETRY_AFTER_SECONDS`, instead of each waiting out the
    connection retries; then requests try the database again. /health always probes it, and
reopens the gate when it answers.

    Only a PostgreSQL server can be away: on SQLite the errors are contention (a busy
    file), which must not turn other requests away.
    """

    def __init__(self, database_url: str, reachable: Callable[[], bool] = lambda: False,
                 lost: Callable[[], None] = lambda: None) -> None:
        self.enabled = database_url.startswith("postgres")
        self.closed_until = 0.0
        self.reachable, self.lost = reachable, lost

    def register(self, app: falcon.App) -> None:
        for error in UNAVAILABLE:
            app.add_error_handler(error, self.handle)

    def open(self) -> None:
        """The database answered (/health's probe): let requests through again."""
        self.closed_until = 0.0

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path not in PUBLIC_PATHS and time.monotonic() < self.closed_until:
            raise unavailable()

    def handle(self, req: falcon.Request, resp: falcon.Response, error: Exception,
               params: dict[str, Any]) -> None:
        log.warning("database unavailable on %s %s: %s", req.method, req.path, error)
        self.lost()  # other threads' next connections are tested before use
        if req.env.get(MAY_RETRY):
            req.env[CONNECTION_LOST] = True  # RetryOnConnectionLoss runs it again
        elif self.enabled and not self.reachable():
            self.closed_until = time.monotonic() + RETRY_AFTER_SECONDS
        failure = unavailable()
        resp.status = failure.status
        resp.media = failure.body
        resp.set_headers(failure.headers)


MAY_RETRY = "ledger.may_retry"  # WSGI environ keys between the wrapper and the gate
CONNECTION_LOST = "ledger.connection_lost"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def safe_to_retry(environ: dict[str, Any]) -> bool:
    """Reads; and consumption batches without an Idempotency-Key, whose item ids make a
    second run replay what the first recorded (a key's lease would answer 409)."""
    method = environ.get("REQUEST_METHOD")
    return method in ("GET", "HEAD") or (
        method == "POST" and environ.get("PATH_INFO") == "/api/consumptions/"
        and "HTTP_IDEMPOTENCY_KEY" not in environ)


class RetryOnConnectionLoss:
    """WSGI wrapper: a request safe to retry whose connection was lost runs once more,
    after `recover` dropped the pools' dead connections; the client sees only the second
    answer."""

    def __init__(self, app: WSGIApp, recover: Callable[[], None]) -> None:
        self.app, self.recover = app, recover

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not safe_to_retry(environ):
            return self.app(environ, start_response)
        environ[MAY_RETRY] = True
        held: list[Any] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            held[:] = [status, headers, exc_info]
            return lambda data: None

        body = self.app(environ, hold)
        if not environ.pop(CONNECTION_LOST, False):
            start_response(*held)
            return body
        getattr(body, "close", lambda: None)()
        self.recover()
        time.sleep(RETRY_PAUSE_SECONDS)  # the pools reconnect in the background
        environ[MAY_RETRY] = False
        stream = environ.get("wsgi.input")
        if isinstance(stream, io.BytesIO):  # the body, as read the first time (bodies.py)
            stream.seek(0)
        return self.app(environ, start_response)


def create_tables_or_defer(create: Callable[[], None]) -> None:
    """gunicorn's on_starting: a database that is down must not stop the master."""
    try:
        create()
    except UNAVAILABLE as error:
        log.warning("database unreachable at start-up (%s); tables are created later", error)
        os.environ[TABLES_PENDING] = "1"  # inherited by the workers forked after this


class DeferredTablesMiddleware:
    """Creates the tables on the first request once the database answers, if start-up
    could not."""

    def __init__(self, create: Callable[[], None]) -> None:
        self.create = create
        self.pending = os.environ.get(TABLES_PENDING) == "1"
        self.lock = threading.Lock()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.pending:
            return
        with self.lock:
            if self.pending:
                self.create()
                self.pending = False
