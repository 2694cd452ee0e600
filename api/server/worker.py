"""gunicorn's gthread worker, but a connection gets a thread only once its headers are in.

gunicorn 27's gthread hands a new connection to a thread as soon as its first byte
arrives (or after 5 s of silence); the thread then blocks reading the rest of the headers.
A client that sends half a request line and stops (slowloris) holds that thread until it
gives up, so as many such clients as threads stop the service. Here the worker's poller
collects request heads without blocking, and a connection whose head is not complete
within `LEDGER_HEADER_TIMEOUT_SECONDS` (10 s) is closed. Bodies are read in threads under
a deadline (api/http/bodies.py); a buffering proxy in front shields them as well (README).
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn import glogging
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024


def header_timeout() -> float:
    return float(os.environ.get("LEDGER_HEADER_TIMEOUT_SECONDS", "10"))


def keepalive_requests() -> int:
    return int(os.environ.get("LEDGER_KEEPALIVE_REQUESTS", "100"))


class HeadFirstWorker(ThreadWorker):  # type: ignore[misc]
    """ThreadWorker whose poller reads request heads; threads only see whole heads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heads: deque[TConn] = deque()
        self.serving = threading.local()  # the gunicorn request each thread serves
        self.head_timeout = header_timeout()
        self.keepalive_requests = keepalive_requests()

    def handle_request(self, req: Any, conn: TConn) -> bool:
        """A kept-alive connection serves at most LEDGER_KEEPALIVE_REQUESTS (100) requests,
        the last answered with `Connection: close` (nginx's keepalive_requests). Its client
        reconnects, and the worker with time to spare accepts first. Kept forever, the
        connections stayed where they first landed: with 4 clients on 2 workers, now and
        then 3 or 4 on one worker, which then served half as many requests per second."""
        conn.served = getattr(conn, "served", 0) + 1
        if conn.served >= self.keepalive_requests:
            req.must_close = True
        self.serving.req = req
        try:
            return bool(super().handle_request(req, conn))
        finally:
            self.serving.req = None

    def load_wsgi(self) -> None:
        """The app, wrapped: an answer given without reading the whole body says
        `Connection: close` and the connection is closed after it (body_consumed)."""
        super().load_wsgi()
        app: Any = self.wsgi  # type: ignore[has-type]
        serving = self.serving

        def closing_unread(environ: dict[str, Any], start_response: Any) -> Any:
            result = app(environ, start_response)
            req = getattr(serving, "req", None)
            if req is not None and not body_consumed(req):
                req.must_close = True  # read by gunicorn when it writes the headers
            return result

        self.wsgi = closing_unread

    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        self.nr_conns += 1
        self.await_head(TConn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection speaks again: its next head is collected the same way."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.await_head(conn)

    def await_head(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        conn.head = bytearray()
        conn.timeout = time.monotonic() + self.head_timeout
        self.heads.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_head_data, conn))

    def on_head_data(self, conn: TConn, client: Any) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            conn.head += data
            if HEAD_END not in conn.head and len(conn.head) < MAX_HEAD_BYTES:
                return
        self.poller.unregister(client)
        self.heads.remove(conn)
        if not data:
            self.nr_conns -= 1
            conn.close()
            return
        conn.init()  # the HTTP/1 parser; gunicorn's own limits still apply to the head
        conn.parser.unreader.unread(bytes(conn.head))
        conn.data_ready = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.heads and self.heads[0].timeout <= now:
            conn = self.heads.popleft()
            self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()


def body_consumed(req: Any) -> bool:
    """Whether the app read the whole body. gunicorn drains an unread body before the
    next request on the connection, in a thread: a refused caller trickling its body
    (a 401 before it is read, api/http/bodies.py) would hold that thread after all. Such a
    connection is closed instead."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length == 0
    if isinstance(reader, ChunkedReader):
        return reader.parser is None  # gunicorn drops the parser at the last chunk
    return True


class QuietAccessLogger(glogging.Logger):
    """gunicorn's logger without its access line: the app writes one structured line per
    request (api/server/observe.py). Given a `logconfig_dict`, gunicorn writes its own as well,
    formatted on every request (5 % of a list request's CPU in py-spy), `accesslog` unset or
    not."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
