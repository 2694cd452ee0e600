"""Per-request observation: a request id, one log line and the request metrics.

The first middleware: it starts the clock before anything else runs and, since Falcon
calls process_response in reverse order, it sees the final status after everything else.
`X-Request-ID` is honoured when the caller (or a proxy) sends a sane one, generated
otherwise, and echoed in the response.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from typing import Any

import falcon

from api.server import metrics
from api.server.logs import REQUEST_LOGGER, request_id

log = logging.getLogger(REQUEST_LOGGER)
# Metric labels are bounded: any other method is "other", a path no route matches
# "unmatched" (3,000 made-up methods made 6 MB of metrics).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


class RequestObserver:
    """``route`` names the route template of a path, also for requests answered before
    routing (a 401 from authentication) and for static files."""

    def __init__(self, route: Any = None) -> None:
        self.route = route or (lambda path: None)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        given = req.get_header("X-Request-ID") or ""
        req.context.request_id = given if SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        req.context.token = request_id.set(req.context.request_id)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is None:  # process_request never ran (Falcon rejected the request)
            self.process_request(req, resp)
            started = req.context.started
        seconds = time.perf_counter() - started
        route = req.uri_template or self.route(req.path) or "unmatched"
        status = resp.status_code
        principal = getattr(req.context, "principal", None)
        resp.set_header("X-Request-ID", req.context.request_id)
        method = req.method if req.method in METHODS else "other"
        metrics.observe_request(method, route, status, seconds,
                                resp.get_header("Idempotent-Replayed") == "true")
        log.info("%s %s %s", req.method, req.relative_uri, status, extra={
            "method": req.method, "path": req.path, "route": route, "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "user": principal.username if principal is not None else None,
            "request_id": req.context.request_id, "remote_addr": req.remote_addr,
            "pid": os.getpid()})
        request_id.reset(req.context.token)
