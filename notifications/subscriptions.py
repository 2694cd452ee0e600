"""Webhook subscriptions and their deliveries: what the API changes and shows.

Subscriptions are settings, not money: plain rows, not events. Deleting one deletes its
queued deliveries; a test send and a redelivery are queued like any delivery, so they
are signed, ordered and retried by the dispatcher.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

from sqlalchemy import Connection, Engine, delete, insert, select, update

from notifications.derive import TEST, notice_id
from notifications.notifier import enqueue, utc_now
from notifications.payloads import iso
from notifications.signing import new_secret
from notifications.tables import deliveries, notifications, webhooks


def create(engine: Engine, url: str, event_types: list[str], customer_uuid: str | None,
           actor: str) -> tuple[str, str]:
    """A new subscription; returns its uuid and its secret (shown only now)."""
    uuid, secret, now = uuid4().hex, new_secret(), utc_now()
    with engine.begin() as conn:
        conn.execute(insert(webhooks), dict(
            uuid=uuid, url=url, event_types=json.dumps(event_types), customer_uuid=customer_uuid,
            secret=secret, healthy=True, created_by=actor, created=now, modified=now))
    return uuid, secret


def change(engine: Engine, uuid: str, values: dict[str, Any]) -> None:
    if "event_types" in values:
        values = {**values, "event_types": json.dumps(values["event_types"])}
    with engine.begin() as conn:
        conn.execute(update(webhooks).where(webhooks.c.uuid == uuid)
                     .values(modified=utc_now(), **values))


def remove(engine: Engine, uuid: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(deliveries).where(deliveries.c.webhook_uuid == uuid))
        conn.execute(delete(webhooks).where(webhooks.c.uuid == uuid))


def find(conn: Connection, uuid: str) -> Any:
    return conn.execute(select(webhooks).where(webhooks.c.uuid == uuid)).first()


def send_test(engine: Engine, webhook: Any) -> str:
    """Queue a `webhook.test` notification for this subscription only; its id."""
    now = utc_now()
    test_id = notice_id(webhook.uuid, TEST, now.isoformat(), uuid4())
    data = {"webhook": {"uuid": webhook.uuid}, "message": "A test from credit-ledger."}
    with engine.begin() as conn:
        conn.execute(insert(notifications), dict(
            id=test_id, type=TEST, customer_uuid=webhook.customer_uuid, created=now,
            data=json.dumps(data)))
        enqueue(conn, webhook.uuid, test_id, now)
    return test_id


def listed_deliveries(conn: Connection, webhook_uuid: str) -> Any:
    return (select(deliveries, notifications.c.type)
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .where(deliveries.c.webhook_uuid == webhook_uuid)
            .order_by(deliveries.c.seq.desc()))


def redeliver(engine: Engine, webhook_uuid: str, delivery_uuid: str) -> bool:
    """Queue the delivery again with a fresh schedule (attempts kept); False if unknown."""
    with engine.begin() as conn:
        done = conn.execute(update(deliveries).where(
            deliveries.c.uuid == delivery_uuid, deliveries.c.webhook_uuid == webhook_uuid,
            deliveries.c.state != "pending")
            .values(state="pending", tries=0, next_attempt_at=utc_now(), lease_until=None,
                    lease_owner=None))
        if done.rowcount:
            return True
        found = conn.execute(select(deliveries.c.uuid).where(
            deliveries.c.uuid == delivery_uuid, deliveries.c.webhook_uuid == webhook_uuid))
        return found.first() is not None


def delivery(row: Any) -> dict[str, Any]:
    return {"uuid": row.uuid, "notification_id": row.notification_id, "type": row.type,
            "state": row.state, "attempts": json.loads(row.attempts),
            "created": iso(row.created),
            "next_attempt_at": iso(row.next_attempt_at) if row.state == "pending" else None}
