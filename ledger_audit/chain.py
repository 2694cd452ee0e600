"""Records and their hashes: canonical JSON (sorted keys, compact, UTF-8), SHA-256.

A record is ``{"seq", "prev_hash", "event", "hash"}`` where ``hash`` is the SHA-256 of the
record's canonical JSON without ``hash``, and ``prev_hash`` the previous record's hash
(GENESIS for the first). The export ends with ``{"type": "head", "count", "hash"}``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: dict[str, Any]) -> str:
    """The SHA-256 of the record's canonical JSON, leaving out its own ``hash``."""
    body = {key: item for key, item in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def chain_record(seq: int, prev_hash: str, event: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"seq": seq, "prev_hash": prev_hash, "event": event}
    record["hash"] = record_hash(record)
    return record


def head_record(count: int, last_hash: str) -> dict[str, Any]:
    return {"type": "head", "count": count, "hash": last_hash}
