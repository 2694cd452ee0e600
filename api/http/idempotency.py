"""`Idempotency-Key` on POST: a retried request gets the first answer, not a second effect.

Design. The first request with a key (per caller: keys are scoped to the user) reserves it
with a short *lease* that its process renews in the background while the request runs
(`LeaseKeeper`). A retry while the lease is live answers 409 "in progress"; a retry after
it lapsed takes the reservation over. So a reservation dies with its process: a worker
killed by kill -9, the OOM killer or gunicorn's timeout stops renewing, and within
`LEDGER_IDEMPOTENCY_LEASE_SECONDS` (30 s) its key works again, instead of answering 409
forever as a reservation kept until "the response is stored" did. The lease is that long
so that it outlives short database outages, during which a live holder cannot renew it
(and renews at once when the database is back).

Exactly once, structurally. The lease only keeps two live requests with one key apart.
What makes a keyed command run at most once is in the event store: the ledger saves the
key's record (ledger.keys.KeyedCommand: owner, key, fingerprint, the command's result) in
the same atomic save as the command's events, and looks for it before executing. So when a
process dies after the commit and before the answer below is stored, the retry that takes
the reservation over finds the record, does not execute again, and the resource renders
the answer from the recorded result: the same status and body a survivor would have sent
(credits are shown as of the key's record, so a change made in between does not show).
Hosts' clocks must agree to well within the lease.

The answer is stored when the request completes and replayed (same body hash) for
`LEDGER_IDEMPOTENCY_TTL_SECONDS` (24 h); a different body under the same key is 422. 5xx
answers and those of requests that failed authentication or authorisation (401/403) free
the key instead of being stored, even when the request had saved events (the database went
away after the ledger committed): the retry finds the key's record and rebuilds the answer.

Expired rows are purged opportunistically: at most once a minute per process, in a
reservation's transaction. On SQLite every reservation writes first (a DELETE), so it
queues on the busy timeout like any writer instead of failing to upgrade a read lock
("database is locked"); lock errors left are retried a few times.

The fingerprint is of the path and the parsed JSON body in canonical form (canonical_body),
so the same JSON with other whitespace or key order replays; it is computed here, after
authentication, like every parse of a body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import falcon
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from api.http import jsoncodec
from api.http.errors import ApiError
from ledger.keys import CommandKey

HEADER = "Idempotency-Key"
NOT_STORED = (401, 403)
PURGE_INTERVAL_SECONDS = 60.0
ATTEMPTS = 5
log = logging.getLogger(__name__)
T = TypeVar("T")

metadata = MetaData()
idempotent_requests = Table(
    "idempotent_requests", metadata,
    Column("owner", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("holder", String(32), nullable=False),
    Column("lease_until", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("status", Integer, nullable=True),
    Column("body", Text, nullable=True),
    Index("idempotent_requests_expiry", "expires_at"),
)
_table = idempotent_requests.c


def ttl_seconds() -> float:
    return float(os.environ.get("LEDGER_IDEMPOTENCY_TTL_SECONDS", 24 * 3600))


def lease_seconds() -> float:
    return float(os.environ.get("LEDGER_IDEMPOTENCY_LEASE_SECONDS", 30))


def request_hash(req: falcon.Request) -> str:
    digest = hashlib.sha256(req.path.encode())
    digest.update(b"\n")
    digest.update(canonical_body(req.context.body))
    return digest.hexdigest()


class _Number(str):
    """A JSON number's text as sent: 1.0 and 1.00 stay different requests."""


def canonical_body(body: bytes) -> bytes:
    """The parsed JSON body in one canonical form (keys sorted, no insignificant
    whitespace), so the same JSON formatted otherwise is the same request; a body that
    is not JSON is fingerprinted as sent. Called after authentication, as every parse."""
    try:
        parsed = json.loads(body, parse_int=_Number, parse_float=_Number,
                            parse_constant=_Number)
    except (ValueError, RecursionError):
        return b"raw:" + body
    return b"json:" + _canonical(parsed).encode()


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_canonical(v)}"
                              for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    return str(value) if isinstance(value, _Number) else json.dumps(value)


def crash_point() -> None:
    """Tests only (LEDGER_TEST_KILL_AFTER_COMMIT=1): the worker dies with SIGKILL between a
    keyed command's commit and the storing of its answer, the worst instant for a key."""
    if os.environ.get("LEDGER_TEST_KILL_AFTER_COMMIT") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


def with_retry(work: Callable[[], T]) -> T:
    """SQLite's lock errors that outlast the busy timeout, retried a bounded number of times."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as error:
            if attempt == ATTEMPTS or "locked" not in str(error):
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Reservation:
    owner: str
    key: str
    holder: str


@dataclass
class LeaseKeeper:
    """Renews the leases of this process's requests in flight, from one daemon thread.

    It also finishes, once the database is back, the requests whose answer could not be
    stored when they completed: their keys stay reserved meanwhile, so a retry cannot
    repeat them. Started on first use, so that it runs in the gunicorn worker.
    """

    engine: Engine
    lease: float
    held: set[str] = field(default_factory=set)
    unfinished: dict[str, Callable[[], None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    def hold(self, holder: str) -> None:
        with self.lock:
            self.held.add(holder)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="idempotency-leases")
                self.thread.start()

    def release(self, holder: str) -> None:
        with self.lock:
            self.held.discard(holder)

    def finish_later(self, holder: str, finish: Callable[[], None]) -> None:
        with self.lock:
            self.unfinished[holder] = finish

    def _run(self) -> None:
        pause = self.lease / 3
        while True:
            time.sleep(pause)
            try:
                self._finish_unfinished()
                with self.lock:
                    holders = list(self.held)
                if holders:
                    self.renew(holders)
                pause = self.lease / 3
            except Exception:  # the database may be down: try again soon, to renew first
                log.warning("could not renew idempotency leases", exc_info=True)
                pause = 1.0

    def _finish_unfinished(self) -> None:
        with self.lock:
            unfinished = list(self.unfinished.items())
        for holder, finish in unfinished:
            finish()
            with self.lock:
                del self.unfinished[holder]
                self.held.discard(holder)

    def renew(self, holders: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(idempotent_requests).where(_table.holder.in_(holders))
                         .values(lease_until=time.time() + self.lease))


class SavedEvents(threading.local):
    """Whether the ledger saved events in this thread's current request."""

    saved = False

    def notify(self, new_events: list[Any]) -> None:
        self.saved = True


class IdempotencyMiddleware:
    def __init__(self, engine: Engine, ledger: Any) -> None:
        self.engine = engine
        self.ledger = ledger
        self.saved = SavedEvents()
        ledger.notify = self.saved.notify  # eventsourcing's after-save hook
        self.ttl = ttl_seconds()
        self.leases = LeaseKeeper(engine, lease_seconds())
        self.next_purge = 0.0

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = req.get_header(HEADER)
        if req.method != "POST" or not key or req.context.principal is None:
            return
        if len(key) > 255:
            raise ApiError(400, {HEADER: ["Ensure this value has at most 255 characters."]})
        owner, digest = req.context.principal.uuid, request_hash(req)
        stored = with_retry(lambda: self._reserve_or_find(owner, key, digest))
        if isinstance(stored, Reservation):
            self.saved.saved = False
            self.leases.hold(stored.holder)
            req.context.idempotency = stored
            self.ledger.use_key(CommandKey(owner, key, digest))
        else:
            _replay(resp, stored, digest)

    def _reserve_or_find(self, owner: str, key: str, digest: str) -> Reservation | Any:
        """A new (or taken over) reservation, or the stored row to answer from."""
        now = time.time()
        where = (_table.owner == owner, _table.key == key)
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(idempotent_requests).where(*where, _table.expires_at < now))
                self._purge_expired(conn, now)
                row = conn.execute(select(idempotent_requests).where(*where)
                                   .with_for_update()).first()
                if row is not None and (row.status is not None or row.lease_until > now
                                        or row.request_hash != digest):
                    return row
                holder = secrets.token_hex(16)
                lease = dict(holder=holder, lease_until=now + self.leases.lease)
                if row is None:
                    conn.execute(insert(idempotent_requests).values(
                        owner=owner, key=key, request_hash=digest, expires_at=now + self.ttl,
                        **lease))
                else:  # its holder died without finishing: take the reservation over
                    conn.execute(update(idempotent_requests).where(*where).values(**lease))
                return Reservation(owner, key, holder)
        except IntegrityError:  # a concurrent first request inserted it: that one holds it
            raise _in_progress() from None

    def _purge_expired(self, conn: Connection, now: float) -> None:
        if now >= self.next_purge:
            self.next_purge = now + min(PURGE_INTERVAL_SECONDS, self.ttl)
            conn.execute(delete(idempotent_requests).where(_table.expires_at < now))

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        reservation: Reservation | None = getattr(req.context, "idempotency", None)
        if reservation is None:
            return
        self.ledger.use_key(None)
        if self.saved.saved:
            crash_point()
        status, media = falcon.http_status_to_code(resp.status), resp.media
        try:
            with_retry(lambda: self._finish(reservation, status, media))
        except Exception:  # the client keeps its answer; the key stays reserved meanwhile
            log.warning("answer to idempotency key %r not stored yet", reservation.key,
                        exc_info=True)
            self.leases.finish_later(reservation.holder,
                                     lambda: self._finish(reservation, status, media))
        else:
            self.leases.release(reservation.holder)

    def _finish(self, reservation: Reservation, status: int, media: Any) -> None:
        mine = (_table.owner == reservation.owner, _table.key == reservation.key,
                _table.holder == reservation.holder)
        with self.engine.begin() as conn:
            if status >= 500 or status in NOT_STORED:
                conn.execute(delete(idempotent_requests).where(*mine))
                return
            body = jsoncodec.encode(media).decode()
            stored = conn.execute(update(idempotent_requests).where(*mine).values(
                status=status, body=body))
            if stored.rowcount == 0:
                log.warning("idempotency key %r was taken over before its answer was stored",
                            reservation.key)


def _replay(resp: falcon.Response, stored: Any, digest: str) -> None:
    if stored.request_hash != digest:
        raise ApiError(422, {"detail": f"This {HEADER} was used with a different request."})
    if stored.status is None:
        raise _in_progress()
    resp.status = falcon.code_to_http_status(stored.status)
    resp.media = jsoncodec.decode(stored.body.encode())
    resp.set_header("Idempotent-Replayed", "true")
    resp.complete = True


def _in_progress() -> ApiError:
    return ApiError(409, {"detail": f"A request with this {HEADER} is in progress."})
