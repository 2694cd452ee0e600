"""The event log as a hash chain (ledger_audit): what `export audit` writes and the live
head `/api/audit/head/` answers.

Events are read in notification order and encoded stably: topic, originator id (hex),
version, timestamp (ISO 8601, UTC) and the event's own fields as JSON, Decimals as
strings, uuids as hex, dates as ISO text. So a later export repeats an earlier one record
for record, with the same hashes, and extends it. Users' token digests are left out.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from ledger_audit import GENESIS, chain_record

BATCH = 500
SECRET_FIELDS = frozenset({"token_hash"})
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp"})


def plain(value: Any) -> Any:
    """JSON for an event field, the same text on every backend and every run."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)  # e.g. a Period: its text, as its transcoding stores it


def encode(topic: str, event: Any) -> dict[str, Any]:
    state = {name: plain(value) for name, value in vars(event).items()
             if name not in ENVELOPE and name not in SECRET_FIELDS}
    return {"topic": topic, "originator_id": event.originator_id.hex,
            "version": event.originator_version,
            "timestamp": event.timestamp.astimezone(UTC).isoformat(), "state": state}


def records(app: Application, after: int = 0, seq: int = 0,
            prev_hash: str = GENESIS) -> Iterator[tuple[int, dict[str, Any]]]:
    """(notification id, chained record) after the position, continuing a chain."""
    position = after
    while True:
        batch = list(app.recorder.select_notifications(
            start=position, limit=BATCH, inclusive_of_start=False))
        if not batch:
            return
        for notification in batch:
            seq += 1
            event = encode(notification.topic, app.mapper.to_domain_event(notification))
            record = chain_record(seq, prev_hash, event)
            prev_hash = record["hash"]
            yield notification.id, record
        position = batch[-1].id


class AuditHead:
    """The live head ({count, hash}), extended from where it was last computed."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.position, self.count, self.hash = 0, 0, GENESIS

    def current(self) -> dict[str, Any]:
        with self.lock:
            for position, record in records(self.app, self.position, self.count, self.hash):
                self.position, self.count, self.hash = position, record["seq"], record["hash"]
            return {"count": self.count, "hash": self.hash}
