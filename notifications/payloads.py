"""A notification as receivers and pollers see it: a Standard Webhooks payload
`{"type", "timestamp", "data"}` whose links are absolute under the given base URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return aware(moment).isoformat()


def payload(row: Any, base: str) -> dict[str, Any]:
    data = json.loads(row.data)
    if "links" in data:
        data["links"] = {name: base + path for name, path in data["links"].items()}
    if "credit" in data and "links" in data:
        data["credit"]["url"] = data["links"]["credit"]
    return {"type": row.type, "timestamp": iso(row.created), "data": data}


def body(row: Any, base: str) -> str:
    """The exact bytes signed and sent."""
    return json.dumps(payload(row, base), separators=(",", ":"), sort_keys=True)
