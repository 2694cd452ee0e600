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
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import uuid4

from eventsourcing.utils import get_topic
from sqlalchemy import Connection, Engine, bindparam, insert, select, update

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
from projections.changes import Changes
from projections.tables import tracking

BATCH = 5000  # events per transaction, as the projector
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

    def catch_up(self, progress: Callable[[int], None] = lambda moved: None) -> int:
        """Process every event not yet processed; returns how far the position moved
        (reported to `progress` after each batch).

        Only the events that concern the notifier are read (by topic): a busy log is
        mostly consumption items, and an import's organisations and projects. The
        position still passes the others, up to the log's end as it stood when read:
        the event store commits notification ids in order (a table lock), so nothing
        below that end can appear later."""
        recorder = self.app.recorder
        moved = 0
        while True:
            with self.engine.begin() as conn:
                position = lock_position(conn)
                stop = min(position + BATCH, int(recorder.max_notification_id() or 0))
                if stop <= position:
                    return moved
                found = recorder.select_notifications(
                    start=position, limit=BATCH, stop=stop, topics=notifier_topics(),
                    inclusive_of_start=False)
                process(conn, [self.app.mapper.to_domain_event(item) for item in found])
                conn.execute(MOVE_POSITION, {"position": stop})
            moved += stop - position
            progress(moved)

    def position(self) -> int:
        """How far into the log the notifier has followed."""
        with self.engine.connect() as conn:
            return int(conn.execute(READ_POSITION).scalar() or 0)

    def check_reminders(self) -> int:
        """Record the expiry reminders due today (UTC); returns how many were new."""
        now = self.clock()
        days = reminder_days()
        with self.engine.begin() as conn:
            lock_position(conn)
            rows = conn.execute(select(notifier_credits).where(
                notifier_credits.c.end_date.is_not(None),
                notifier_credits.c.deleted.is_(False))).mappings().all()
            return record_all(conn, [(notice, now) for row in rows
                                     for notice in derive.reminder_notices(dict(row),
                                                                           now.date(), days)])


@cache
def notifier_topics() -> list[str]:
    """The topics of every event class that can cause a notification or change a credit
    the notifier follows, as the event store records them."""
    def with_subclasses(kind: type) -> Iterator[type]:
        yield kind
        subclass: type
        for subclass in kind.__subclasses__():
            yield from with_subclasses(subclass)

    return sorted({get_topic(kind) for base in CONCERNED for kind in with_subclasses(base)})


def process(conn: Connection, events: list[Any]) -> None:
    """Fold a batch of events into the notifier's credits and record what they cause.

    A few statements a batch, not two or three an event: after an import of 100,000
    organisations the notifier replayed 700,000 events one query at a time, a core busy
    for 100 s beside the server it shares the machine with (issue 18)."""
    credits = CreditStates.load(conn, events)
    caused = [(notice, event.timestamp) for event in events for notice in credits.apply(event)]
    credits.write()
    record_all(conn, caused)


class CreditStates:
    """The notifier's view of the credits a batch touches, folded in memory and written
    back in bulk by the read models' `Changes` (COPY and array UPDATEs on PostgreSQL)."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.states = changes.rows[notifier_credits]
        self.stored = {key: dict(state) for key, state in self.states.items() if state}

    @classmethod
    def load(cls, conn: Connection, events: list[Any]) -> CreditStates:
        changes = Changes(conn)
        changes.load(notifier_credits, {
            (event.originator_id.hex,) for event in events
            if isinstance(event, Credit.Event) and not isinstance(event, CREATED)})
        return cls(changes)

    def apply(self, event: Any) -> list[Notice]:
        """One event's effect on its credit (if the notifier knows it); its notices."""
        notice = derive.calendar_notice(event)
        if notice is not None:
            return [notice]
        if not isinstance(event, CustomerCredit.Event | ProjectCredit.Event):
            return []
        if isinstance(event, CREATED):
            self.changes.insert(notifier_credits, derive.created_state(event))
            return []
        if not isinstance(event, Credit.Event):
            return []
        state = self.states.get((event.originator_id.hex,))
        if state is None:
            return []
        return derive.apply_credit_event(state, event)

    def write(self) -> None:
        """New credits inserted, changed ones updated (only the columns that changed)."""
        for key, stored in self.stored.items():
            state = self.states[key]
            assert state is not None
            changed = {name: value for name, value in state.items() if stored[name] != value}
            if changed:
                self.changes.update(notifier_credits, key, **changed)
        self.changes.flush()


CREATED = (CustomerCredit.Created, ProjectCredit.Created)
CONCERNED = (CustomerCredit.Event, ProjectCredit.Event, *derive.CALENDAR)
CHUNK = 500  # ids per IN list: a batch's notifications, well under any limit on parameters
MINE = tracking.c.name == NOTIFIER_POSITION
READ_POSITION = select(tracking.c.position).where(MINE)
LOCK_POSITION = (update(tracking).where(MINE).values(position=tracking.c.position)
                 .returning(tracking.c.position))
MOVE_POSITION = update(tracking).where(MINE).values(position=bindparam("position"))
KNOWN_IDS = select(notifications.c.id).where(
    notifications.c.id.in_(bindparam("ids", expanding=True)))


def lock_position(conn: Connection) -> int:
    """Write to read, as the projector does: the row lock (PostgreSQL) or write lock
    (SQLite), and the position, in one statement."""
    locked = conn.execute(LOCK_POSITION).scalar()
    if locked is None:
        conn.execute(insert(tracking), dict(name=NOTIFIER_POSITION, position=0))
        return 0
    return int(locked)


def record_all(conn: Connection, caused: list[tuple[Notice, datetime]]) -> int:
    """Record each notification whose id is new (the first of a repeated one), with a
    delivery per subscription that wants it and existed when it happened; returns how
    many were new. A known id was recorded by an earlier round: never twice."""
    first: dict[str, tuple[Notice, datetime]] = {}
    for notice, created in caused:
        first.setdefault(notice.id, (notice, created))
    ids = list(first)
    known: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        known.update(conn.execute(KNOWN_IDS, {"ids": ids[start:start + CHUNK]}).scalars())
    new = [found for notice_id, found in first.items() if notice_id not in known]
    if not new:
        return 0
    conn.execute(insert(notifications), [dict(
        id=notice.id, type=notice.type, customer_uuid=notice.customer_uuid, created=created,
        data=json.dumps(notice.data)) for notice, created in new])
    hooks = Subscriptions.load(conn, {notice.customer_uuid for notice, _ in new})
    queued = [delivery(webhook, notice.id, created) for notice, created in new
              for webhook in hooks.wanting(notice, created)]
    if queued:
        conn.execute(insert(deliveries), queued)
    return len(new)


class Subscriptions:
    """The subscriptions a batch's notifications may go to: site-wide ones and their
    organisations', read in one query, in the order they were made."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = [(row.uuid, row.customer_uuid, set(json.loads(row.event_types)),
                      aware(row.created)) for row in rows]

    @classmethod
    def load(cls, conn: Connection, customers: set[str | None]) -> Subscriptions:
        scope: Any = webhooks.c.customer_uuid.is_(None)
        named = sorted(uuid for uuid in customers if uuid is not None)
        if named:
            scope = scope | webhooks.c.customer_uuid.in_(named)
        return cls(conn.execute(select(webhooks.c.uuid, webhooks.c.customer_uuid,
                                       webhooks.c.event_types, webhooks.c.created)
                                .where(scope).order_by(webhooks.c.created)).all())

    def wanting(self, notice: Notice, created: datetime) -> list[str]:
        """Site-wide subscriptions and the notification's organisation's, wanting its
        type, that existed when it happened."""
        return [uuid for uuid, customer, types, made in self.rows
                if customer in (None, notice.customer_uuid) and notice.type in types
                and made <= created]


def delivery(webhook_uuid: str, notification_id: str, due: datetime) -> dict[str, Any]:
    """A pending delivery of a notification to one subscription (the outbox's row)."""
    return dict(uuid=uuid4().hex, webhook_uuid=webhook_uuid, notification_id=notification_id,
                state="pending", attempts="[]", tries=0, next_attempt_at=due, created=due)


def enqueue(conn: Connection, webhook_uuid: str, notification_id: str,
            due: datetime) -> None:
    conn.execute(insert(deliveries), delivery(webhook_uuid, notification_id, due))
