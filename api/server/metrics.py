"""Prometheus metrics at GET /metrics, summed over every gunicorn worker.

Under gunicorn each worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set and
emptied at start by api/server/gunicorn_conf.py, before any worker imports prometheus_client);
a scrape, answered by any one worker, reads them all. Projector position and lag are read
from the database at scrape time, so every worker tells the same truth. Without the
directory (tests, a bare WSGI server) the process's own registry is served.

Who may read it: a staff user's token, or LEDGER_METRICS_TOKEN as `Authorization: Bearer`;
anyone else only while the service listens on loopback alone and no metrics token is set.
Labels are bounded whatever callers send: methods outside HTTP's own and paths no route
matches fold into one label each (api/server/observe.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator, Sequence
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.http.errors import ApiError
from api.http.routes import Route
from api.http.schema import operation, text_response
from api.server.wiring import Services
from ledger.store import SaveObserver

REQUESTS = Counter("ledger_http_requests_total", "HTTP requests answered, by route template "
                   "and status.", ["method", "route", "status"])
LATENCY = Histogram("ledger_http_request_duration_seconds", "Time to answer an HTTP request, "
                    "by route template and status.", ["method", "route", "status"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
EVENTS = Counter("ledger_events_appended_total", "Domain events appended to the store, by "
                 "type.", ["type"])
IDEMPOTENT_REPLAYS = Counter("ledger_idempotent_replays_total", "POSTs answered by replaying "
                             "the stored answer of an earlier request with the same "
                             "Idempotency-Key.")
SAVE_RETRIES = Counter("ledger_save_retries_total", "Saves that lost the version check to a "
                       "concurrent writer and were re-run on fresh state.")
CONFLICTS = Counter("ledger_conflicts_total", "Commands that lost every attempt against "
                    "concurrent writers (answered 409).")
CONSUMPTION_ITEMS = Counter("ledger_consumption_items_posted_total", "Consumption items "
                            "recorded (replays of a known item id not counted).")
PERIOD_CLOSES = Counter("ledger_period_closes_total", "Billing periods closed.")

CONSUMPTION_RECORDED = "ConsumptionItem.Recorded"
PERIOD_CLOSED = "BillingCalendar.PeriodClosed"


class StoreMetrics(SaveObserver):
    """Counts what the event store did in this process."""

    def saved(self, events: Sequence[Any]) -> None:
        for domain_event in events:
            kind = type(domain_event).__qualname__
            EVENTS.labels(kind).inc()
            if kind == CONSUMPTION_RECORDED:
                CONSUMPTION_ITEMS.inc()
            elif kind == PERIOD_CLOSED:
                PERIOD_CLOSES.inc()

    def retried(self) -> None:
        SAVE_RETRIES.inc()

    def gave_up(self) -> None:
        CONFLICTS.inc()


def observe_request(method: str, route: str, status: int, seconds: float,
                    replayed: bool) -> None:
    labels = (method, route, str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)
    if replayed:
        IDEMPOTENT_REPLAYS.inc()


class ProjectorCollector(Collector):
    """Projector position, log head and lag, read from the database at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        head = int(self.services.ledger.recorder.max_notification_id() or 0)
        position = self.services.projector.position()
        yield GaugeMetricFamily("ledger_projector_position", "Last event applied to the read "
                                "models (notification id).", value=position)
        yield GaugeMetricFamily("ledger_event_log_head", "Newest event in the store "
                                "(notification id).", value=head)
        yield GaugeMetricFamily("ledger_projector_lag_events", "Events stored but not yet "
                                "applied to the read models.", value=max(head - position, 0))


def loopback_only(addresses: str) -> bool:
    """Whether every address the service listens on (gunicorn binds, space-separated:
    HOST:PORT, [IPv6]:PORT, unix:PATH) is reachable from this machine alone."""
    for address in addresses.split():
        if address.startswith(("unix:", "fd://")):
            continue
        host = address.rpartition(":")[0].strip("[]") if ":" in address else address
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:  # a host name (or "0.0.0.0"-like wildcard spelled otherwise)
            return False
    return True


def listening_on() -> str:
    """The addresses gunicorn bound (set by its on_starting hook), else LEDGER_BIND."""
    return os.environ.get("LEDGER_BOUND") or os.environ.get("LEDGER_BIND", "127.0.0.1:8000")


class Metrics:
    """GET /metrics in Prometheus text format."""

    routes = [Route("/metrics", {"get": operation(
        "metrics", "service", "Prometheus metrics (a Bearer token when the server sets "
        "LEDGER_METRICS_TOKEN)", {"200": text_response("text/plain", "Prometheus text format")},
        public=True)})]
    schemas: dict[str, object] = {}

    def __init__(self, services: Services) -> None:
        self.projector = ProjectorCollector(services)
        self.token = os.environ.get("LEDGER_METRICS_TOKEN", "")
        self.open = not self.token and loopback_only(listening_on())

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._check_access(req)
        registry = CollectorRegistry()
        registry.register(self.projector)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
        else:  # this process's own registry, beside the per-scrape gauges
            body = generate_latest(REGISTRY) + generate_latest(registry)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = body

    def _check_access(self, req: falcon.Request) -> None:
        principal = getattr(req.context, "principal", None)
        if self.open or (principal is not None and principal.is_staff):
            return
        keyword, _, given = (req.get_header("Authorization") or "").partition(" ")
        if (not self.token or keyword.lower() != "bearer"
                or not hmac.compare_digest(given.strip().encode(), self.token.encode())):
            raise ApiError(401, {"detail": "A staff token, or the metrics bearer token, is "
                                           "required."}, {"WWW-Authenticate": "Bearer"})

