"""Request bodies read once, whole, bounded in size and time, before anything parses them.

A Content-Length over the limit is refused with 413 before a byte is read. A chunked body
(no Content-Length) is read up to the limit, so it is never silently empty. A body that
has not arrived within `LEDGER_BODY_TIMEOUT_SECONDS` is a 408: a client trickling its body
holds a worker thread that long at most (gunicorn's poller only shields the wait for the
headers; a buffering proxy in front shields the body too). The bytes are kept on
`req.context.body` (the idempotency check hashes them without parsing) and put back as the
request's stream for Falcon's media handling.

Only an authenticated caller's body is read (this middleware runs after authentication):
an anonymous write with a body is a 401 at once, so trickling bodies without a token
cannot hold worker threads; the worker then closes the connection rather than drain the
unread body (api/server/worker.py).
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

import falcon

from api.http.auth import PUBLIC_PATHS
from api.http.errors import ApiError, not_authenticated

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0
CHUNK = 64 * 1024
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def max_body_bytes() -> int:
    return int(os.environ.get("LEDGER_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def body_timeout() -> float:
    return float(os.environ.get("LEDGER_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS))


def too_large(limit: int) -> ApiError:
    return ApiError(413, {"detail": f"Request body is larger than {limit} bytes."})


def too_slow() -> ApiError:
    return ApiError(408, {"detail": "The request body did not arrive in time."})


class BodyMiddleware:
    """Reads the body of writes into memory, refusing more than `limit` bytes."""

    def __init__(self) -> None:
        self.limit = max_body_bytes()
        self.timeout = body_timeout()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.body = b""
        if req.method not in BODY_METHODS:
            return
        length = req.content_length
        if length is not None and length > self.limit:
            raise too_large(self.limit)
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if (length is None or length == 0) and not chunked:
            return
        if (getattr(req.context, "principal", None) is None
                and not req.path.startswith(PUBLIC_PATHS)):
            raise not_authenticated()
        data = self.read(req, self.limit + 1 if length is None else length)
        if len(data) > self.limit:
            raise too_large(self.limit)
        req.context.body = data
        req.env["wsgi.input"] = req.stream = io.BytesIO(data)
        req.env["CONTENT_LENGTH"] = str(len(data))
        req._bounded_stream = None  # Falcon re-wraps the new stream with the new length

    def read(self, req: falcon.Request, most: int) -> bytes:
        """Up to `most` bytes, each socket read limited to the time left (gunicorn gives us
        its socket; other servers read without a deadline)."""
        sock: Any = req.env.get("gunicorn.socket")
        previous = sock.gettimeout() if sock is not None else None
        deadline = time.monotonic() + self.timeout
        parts: list[bytes] = []
        size = 0
        try:
            while size < most:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise too_slow()
                if sock is not None:
                    sock.settimeout(remaining)
                part = req.stream.read(min(CHUNK, most - size))
                if not part:
                    break
                parts.append(part)
                size += len(part)
        except TimeoutError:
            raise too_slow() from None
        finally:
            if sock is not None:
                sock.settimeout(previous)
        return b"".join(parts)
