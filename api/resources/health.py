"""GET /health: answers within a second with database reachability and projector lag.

The database is probed in a background thread, one probe at a time; the request waits for
it at most `PROBE_SECONDS`, so an unreachable or hanging database yields a prompt 503
rather than a request stuck on connection timeouts. 503 also when the read models are more
than `LEDGER_HEALTH_MAX_LAG` events behind the log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, TimeoutError
from dataclasses import dataclass
from typing import Any

import falcon

from api.http.routes import Route
from api.http.schema import INTEGER, RETRY_AFTER, STRING, json_response, obj, operation, ref
from api.server.outage import RETRY_AFTER_SECONDS
from api.server.wiring import Services

PROBE_SECONDS = 0.8
DEFAULT_MAX_LAG = 1000


@dataclass(frozen=True)
class Probe:
    position: int
    newest: int

    @property
    def lag(self) -> int:
        return max(0, self.newest - self.position)


class Health:
    routes = [Route("/health", {"get": operation("health", "service", "Liveness", {
        "200": json_response(ref("Health")),
        "503": json_response(ref("Health"), "The database is unreachable, or the read models "
                             "lag by more than LEDGER_HEALTH_MAX_LAG events", RETRY_AFTER)},
        public=True)})]
    schemas = {"Health": obj({
        "status": {"type": "string", "enum": ["ok", "lagging", "unavailable"]},
        "database": {"type": "string", "enum": ["ok", "unreachable", "timeout"]},
        "position": {**INTEGER, "description": "The projector's position."},
        "lag": {**INTEGER, "description": "Events not yet in the read models."},
        "error": STRING}, ["status", "database"])}

    def __init__(self, services: Services, on_reachable: Callable[[], None]) -> None:
        self.services = services
        self.on_reachable = on_reachable
        self.max_lag = int(os.environ.get("LEDGER_HEALTH_MAX_LAG", DEFAULT_MAX_LAG))
        self.lock = threading.Lock()
        self.running: Future[Probe] | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            probe = self._probe().result(timeout=PROBE_SECONDS)
        except TimeoutError:
            self._answer(resp, {"status": "unavailable", "database": "timeout"})
        except Exception as error:  # any failure to reach the database is the answer
            self._answer(resp, {"status": "unavailable", "database": "unreachable",
                                "error": type(error).__name__})
        else:
            self.on_reachable()
            body: dict[str, Any] = {"status": "ok", "database": "ok",
                                    "position": probe.position, "lag": probe.lag}
            if probe.lag > self.max_lag:
                body["status"] = "lagging"
                self._answer(resp, body)
            else:
                resp.media = body

    def _answer(self, resp: falcon.Response, body: dict[str, Any]) -> None:
        resp.status = falcon.HTTP_503
        resp.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        resp.media = body

    def _probe(self) -> Future[Probe]:
        """The probe in flight, or a new one: never more than one thread per process."""
        with self.lock:
            if self.running is None or self.running.done():
                self.running = Future()
                threading.Thread(target=self._run, args=(self.running,), daemon=True).start()
            return self.running

    def _run(self, future: Future[Probe]) -> None:
        try:
            position = self.services.projector.position()
            newest = self.services.ledger.recorder.max_notification_id() or 0
            future.set_result(Probe(position, newest))
        except Exception as error:
            future.set_exception(error)
