"""The notifier's tables: its view of each credit, the notifications, subscriptions, deliveries.

They are not read models: `rebuild` neither drops nor replays them. A notification is
recorded once (its id is derived from the events that caused it) and its deliveries are the
outbox a dispatcher works through; the notifier's position in the event log is a row of
the projector's tracking table, committed in the same transaction as the rows it wrote.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from projections.tables import Money, Uuid

metadata = MetaData()

# What the notifier knows of each credit, folded from its events.
notifier_credits = Table(
    "notifier_credits", metadata,
    Uuid("uuid", primary_key=True),
    Column("is_org", Boolean, nullable=False),
    Uuid("customer_uuid", nullable=False),
    Uuid("project_uuid", nullable=True),
    Column("balance", Money, nullable=False),
    Column("granted", Money, nullable=False),  # created plus top-ups minus reductions
    Column("thresholds", Text, nullable=False),  # JSON, as written
    Column("below", Text, nullable=False),  # JSON: thresholds crossed and not re-armed
    Column("exhausted", Boolean, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("deleted", Boolean, nullable=False),
)

notifications = Table(
    "notifications", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),  # the webhook-id of deliveries
    Column("type", String(64), nullable=False),
    Uuid("customer_uuid", nullable=True),  # None: site-wide (period.*), staff only
    Column("created", DateTime(timezone=True), nullable=False),
    Column("data", Text, nullable=False),  # JSON; links are paths, made absolute when shown
    Index("notifications_customer_created", "customer_uuid", "created"),
)

webhooks = Table(
    "webhooks", metadata,
    Uuid("uuid", primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("event_types", Text, nullable=False),  # JSON list
    Uuid("customer_uuid", nullable=True, index=True),  # None: site-wide (staff only)
    Column("secret", String(100), nullable=False),
    Column("healthy", Boolean, nullable=False),
    Column("created_by", String(150), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("modified", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "webhook_deliveries", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # order per subscription
    Uuid("uuid", nullable=False, unique=True),
    Uuid("webhook_uuid", nullable=False),
    Column("notification_id", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Text, nullable=False),  # JSON [{time, status_code, latency_ms, error}]
    Column("tries", Integer, nullable=False),  # attempts since created or redelivered
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("webhook_deliveries_pending", "state", "webhook_uuid", "seq"),
    Index("webhook_deliveries_by_webhook", "webhook_uuid", "seq"),
)

NOTIFIER_TABLES = [notifier_credits, notifications, webhooks, deliveries]
NOTIFIER_POSITION = "notifier"  # its row in projections.tables.tracking
