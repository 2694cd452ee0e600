"""Request bodies read once, whole and bounded, before anything parses them.

A Content-Length over the limit is refused with 413 before a byte is read. A chunked body
(no Content-Length) is read up to the limit, so it is never silently empty. The bytes are
kept on `req.context.body` (the idempotency check hashes them without parsing) and put
back as the request's stream for Falcon's media handling.
"""

from __future__ import annotations

import io
import os

import falcon

from api.errors import ApiError

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def max_body_bytes() -> int:
    return int(os.environ.get("LEDGER_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def too_large(limit: int) -> ApiError:
    return ApiError(413, {"detail": f"Request body is larger than {limit} bytes."},
                    {"Connection": "close"})


class BodyMiddleware:
    """Reads the body of writes into memory, refusing more than `limit` bytes."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = max_body_bytes() if limit is None else limit

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.body = b""
        if req.method not in BODY_METHODS:
            return
        length = req.content_length
        if length is not None and length > self.limit:
            raise too_large(self.limit)
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if length is None and not chunked:
            return
        data = req.stream.read(self.limit + 1) if chunked else req.bounded_stream.read()
        if len(data) > self.limit:
            raise too_large(self.limit)
        req.context.body = data
        req.env["wsgi.input"] = req.stream = io.BytesIO(data)
        req.env["CONTENT_LENGTH"] = str(len(data))
        req._bounded_stream = None  # Falcon re-wraps the new stream with the new length
