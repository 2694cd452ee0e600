"""`Idempotency-Key` on POST: a retried request gets the first answer, not a second effect.

The key is scoped to the caller. The first request with a key reserves it; its answer is
stored when it completes (a 5xx frees the key so the client may retry). A retry with the
same key and the same body replays the stored answer; with another body it is refused.
Consumption items are idempotent by their own ids besides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import falcon
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
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
from sqlalchemy.exc import IntegrityError

from api.errors import ApiError

HEADER = "Idempotency-Key"
metadata = MetaData()
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("owner", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=True),
    Column("body", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
)


def request_hash(req: falcon.Request) -> str:
    body = req.get_media(default_when_empty=None)
    text = json.dumps([req.path, body], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class IdempotencyMiddleware:
    engine: Engine

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = req.get_header(HEADER)
        if req.method != "POST" or not key or req.context.principal is None:
            return
        if len(key) > 255:
            raise ApiError(400, {HEADER: ["Ensure this value has at most 255 characters."]})
        owner, digest = req.context.principal.uuid, request_hash(req)
        with self.engine.begin() as conn:
            stored = conn.execute(select(idempotency_keys).where(
                idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)).first()
            if stored is None:
                self._reserve(conn, owner, key, digest)
                req.context.idempotency = (owner, key)
                return
        self._replay(resp, stored, digest)

    def _reserve(self, conn: Any, owner: str, key: str, digest: str) -> None:
        try:
            with conn.begin_nested():
                conn.execute(insert(idempotency_keys).values(
                    owner=owner, key=key, request_hash=digest, created=datetime.now(UTC)))
        except IntegrityError:
            raise _in_progress() from None

    def _replay(self, resp: falcon.Response, stored: Any, digest: str) -> None:
        if stored.request_hash != digest:
            raise ApiError(422, {"detail": f"This {HEADER} was used with a different request."})
        if stored.status is None:
            raise _in_progress()
        resp.status = falcon.code_to_http_status(stored.status)
        resp.media = json.loads(stored.body)
        resp.set_header("Idempotent-Replayed", "true")
        resp.complete = True

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        reserved = getattr(req.context, "idempotency", None)
        if reserved is None:
            return
        owner, key = reserved
        where = (idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)
        status = falcon.http_status_to_code(resp.status)
        with self.engine.begin() as conn:
            if status >= 500:
                conn.execute(delete(idempotency_keys).where(*where))
            else:
                body = json.dumps(resp.media, default=str)
                conn.execute(update(idempotency_keys).where(*where).values(
                    status=status, body=body))


def _in_progress() -> ApiError:
    return ApiError(409, {"detail": f"A request with this {HEADER} is in progress."})
