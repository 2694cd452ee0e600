"""Refuse to serve read models older than this release (see projections/schema_version.py).

Runs before the catch-up middleware, which would otherwise write into the old tables. While
the read models are stale every API route answers 503 and /health says why; the check is
repeated on each request so the server recovers by itself once `credit-ledger rebuild` has
run. Once current, this process stops checking (versions only go up).
"""

from __future__ import annotations

import falcon

from api.http.errors import ApiError
from api.server.outage import UNAVAILABLE
from api.server.wiring import Services
from projections import schema_version

# served whatever the read models' state: they do not read them (nor catch them up)
PATHS_WITHOUT_READ_MODELS = ("/api/schema/", "/api/docs/", "/metrics")
RETRY_AFTER = "30"


class ReadModelGuard:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.current = False

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.current or req.path.startswith(PATHS_WITHOUT_READ_MODELS):
            return
        try:
            problem = schema_version.problem(self.services.engine)
        except UNAVAILABLE:
            if req.path == "/health":
                return  # /health itself reports the database as unreachable
            raise
        if problem is None:
            self.current = True
            return
        if req.path.startswith("/api/"):
            raise ApiError(503, {"detail": problem}, {"Retry-After": RETRY_AFTER})
        if req.path == "/health":
            resp.status = falcon.HTTP_503
            resp.media = {"status": "read models need a rebuild", "detail": problem}
            resp.complete = True
