"""A webhook receiver on loopback for the notification tests: records every request,
answers from a script of status codes (then 200), optionally slowly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import time_machine
from standardwebhooks.webhooks import Webhook

from tests.live import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    at: float


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every body, each verified against its Standard Webhooks signature. Verified as of
        its signed timestamp: a test process's clock is moved by time-machine, a live
        server's is not, so their "now" differ (the timestamp is part of what is signed)."""
        hook = Webhook(secret)
        bodies = []
        for item in self.received:
            signed_at = datetime.fromtimestamp(int(item.headers["webhook-timestamp"]), UTC)
            with time_machine.travel(signed_at, tick=False):
                bodies.append(hook.verify(item.body, item.headers))
        return bodies

    def ids(self) -> list[str]:
        return [item.headers["webhook-id"] for item in self.received]


@contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(f"http://127.0.0.1:{port}/hook", **options)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            state.started.set()
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            time.sleep(state.delay)
            with lock:
                state.received.append(Received({k.lower(): v for k, v in self.headers.items()},
                                               body, time.monotonic()))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", state.url + "/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
