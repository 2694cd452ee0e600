"""Follow the event log and record notifications, exactly as the projector applies events.

Each batch locks the notifier's tracking row, folds the next events into its view of the
credits (`notifier_credits`), records the notifications they cause with one delivery per
matching subscription (the outbox), and moves its position, all in one transaction: a
crash leaves everything or nothing of the batch, and two notifiers take turns. Reminders
before `end_date` come from the clock, checked under the same lock; their ids name the
credit, its end date and the reminder day, so they are recorded once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import Connection, Engine, insert, select, update

from ledger.application import Ledger
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from notifications import derive
from notifications.derive import Notice
from notifications.payloads import aware
from notifications.tables import (
    NOTIFIER_POSITION,
    deliveries,
    metadata,
    notifications,
    notifier_credits,
    webhooks,
)
from projections.tables import tracking

BATCH = 500
DEFAULT_REMINDER_DAYS = "30,7,1"


def utc_now() -> datetime:
    """The Python clock (time-machine moves it in tests)."""
    return datetime.now(UTC)


def reminder_days() -> list[int]:
    """LEDGER_EXPIRY_REMINDER_DAYS: days before end_date, e.g. 30,7,1."""
    raw = os.environ.get("LEDGER_EXPIRY_REMINDER_DAYS", DEFAULT_REMINDER_DAYS)
    return sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)


class Notifier:
    """Records the notifications the log's events and the clock cause."""

    def __init__(self, app: Ledger, engine: Engine,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock

    def catch_up(self) -> int:
        """Process every event not yet processed; returns how many."""
        done = 0
        while True:
            with self.engine.begin() as conn:
                position = lock_position(conn)
                found = self.app.recorder.select_notifications(
                    start=position, limit=BATCH, inclusive_of_start=False)
                for item in found:
                    self._apply(conn, self.app.mapper.to_domain_event(item))
                if found:
                    conn.execute(update(tracking).where(tracking.c.name == NOTIFIER_POSITION)
                                 .values(position=found[-1].id))
            done += len(found)
            if len(found) < BATCH:
                return done

    def check_reminders(self) -> int:
        """Record the expiry reminders due today (UTC); returns how many were new."""
        now = self.clock()
        days = reminder_days()
        recorded = 0
        with self.engine.begin() as conn:
            lock_position(conn)
            rows = conn.execute(select(notifier_credits).where(
                notifier_credits.c.end_date.is_not(None),
                notifier_credits.c.deleted.is_(False))).mappings().all()
            for row in rows:
                for notice in derive.reminder_notices(dict(row), now.date(), days):
                    recorded += record(conn, notice, now)
        return recorded

    def _apply(self, conn: Connection, event: Any) -> None:
        notice = derive.calendar_notice(event)
        if notice is not None:
            record(conn, notice, event.timestamp)
            return
        if not isinstance(event, CustomerCredit.Event | ProjectCredit.Event):
            return
        if isinstance(event, CustomerCredit.Created | ProjectCredit.Created):
            state = derive.created_state(event)
            conn.execute(insert(notifier_credits), state)
            return
        if not isinstance(event, Credit.Event):
            return
        found = conn.execute(select(notifier_credits).where(
            notifier_credits.c.uuid == event.originator_id.hex)).mappings().first()
        if found is None:
            return
        state = dict(found)
        notices = derive.apply_credit_event(state, event)
        if state != dict(found):
            conn.execute(update(notifier_credits)
                         .where(notifier_credits.c.uuid == state["uuid"]).values(**state))
        for notice in notices:
            record(conn, notice, event.timestamp)


def lock_position(conn: Connection) -> int:
    """Write first, then read: the row lock (PostgreSQL) or write lock (SQLite)."""
    locked = conn.execute(update(tracking).where(tracking.c.name == NOTIFIER_POSITION)
                          .values(position=tracking.c.position))
    if locked.rowcount == 0:
        conn.execute(insert(tracking), dict(name=NOTIFIER_POSITION, position=0))
    found = conn.execute(select(tracking.c.position)
                         .where(tracking.c.name == NOTIFIER_POSITION))
    return int(found.scalar_one())


def record(conn: Connection, notice: Notice, created: datetime) -> int:
    """Record a notification unless its id is known, with a delivery per subscription that
    wants it and existed when it happened; returns 1 if it was new."""
    known = conn.execute(select(notifications.c.id).where(notifications.c.id == notice.id))
    if known.first() is not None:
        return 0
    conn.execute(insert(notifications), dict(
        id=notice.id, type=notice.type, customer_uuid=notice.customer_uuid, created=created,
        data=json.dumps(notice.data)))
    for webhook in subscribers(conn, notice, created):
        enqueue(conn, webhook, notice.id, created)
    return 1


def subscribers(conn: Connection, notice: Notice, created: datetime) -> list[str]:
    """Site-wide subscriptions, and the notification's organisation's, wanting its type."""
    scope: Any = webhooks.c.customer_uuid.is_(None)
    if notice.customer_uuid is not None:
        scope = scope | (webhooks.c.customer_uuid == notice.customer_uuid)
    rows = conn.execute(select(webhooks.c.uuid, webhooks.c.event_types, webhooks.c.created)
                        .where(scope).order_by(webhooks.c.created)).all()
    return [row.uuid for row in rows
            if notice.type in json.loads(row.event_types) and aware(row.created) <= created]


def enqueue(conn: Connection, webhook_uuid: str, notification_id: str,
            due: datetime) -> None:
    conn.execute(insert(deliveries), dict(
        uuid=uuid4().hex, webhook_uuid=webhook_uuid, notification_id=notification_id,
        state="pending", attempts="[]", tries=0, next_attempt_at=due, created=due))
