"""Deliver the outbox: at least once, in order per subscription, signed, with retries.

A dispatcher takes the oldest undelivered delivery of each subscription and claims it with
a lease (a conditional UPDATE: one dispatcher wins, on SQLite and PostgreSQL alike); later
deliveries of that subscription wait until it is delivered or failed. A dispatcher killed
mid-delivery leaves a lease that expires, and the next one resends the same `webhook-id`.
A failed attempt (timeout, connection error, non-2xx, a redirect) is retried after the next
gap of LEDGER_WEBHOOK_RETRY_SCHEDULE, with jitter; once the schedule is used up the
delivery is failed and the subscription unhealthy until a delivery succeeds.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import Engine, select, update

from notifications import signing
from notifications.notifier import utc_now
from notifications.payloads import aware, body, iso
from notifications.tables import deliveries, notifications, webhooks
from notifications.targets import TargetRefused, check_url

DEFAULT_SCHEDULE = "5,300,1800,7200,18000,36000"
JITTER = 0.1  # each gap is stretched or shrunk by up to 10 %
PARALLEL = 8  # subscriptions sent to at once


def retry_schedule() -> list[float]:
    """LEDGER_WEBHOOK_RETRY_SCHEDULE: seconds between attempts; n gaps, 1 + n attempts."""
    raw = os.environ.get("LEDGER_WEBHOOK_RETRY_SCHEDULE", DEFAULT_SCHEDULE)
    return [float(part) for part in raw.split(",") if part.strip()]


def timeout() -> float:
    """LEDGER_WEBHOOK_TIMEOUT: seconds for one attempt (connect and answer)."""
    return float(os.environ.get("LEDGER_WEBHOOK_TIMEOUT", "10"))


def lease_seconds() -> float:
    """How long a claimed delivery is ours: past its timeout, so a live attempt is never
    repeated, and short, so a killed dispatcher's delivery is resent soon after."""
    return 2 * timeout() + 5


def public_url() -> str:
    """LEDGER_PUBLIC_URL: where the API is reached, for the links in payloads."""
    return os.environ.get("LEDGER_PUBLIC_URL", "").rstrip("/")


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, and a failed attempt


OPENER = urllib.request.build_opener(NoRedirects)


@dataclass
class Attempt:
    time: str
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, headers: dict[str, str], content: str, seconds: float) -> Attempt:
    """One POST, bounded in time, never following a redirect."""
    started, moment = time.monotonic(), utc_now()
    status, error = None, None
    try:
        check_url(url)
        request = urllib.request.Request(url, data=content.encode(), headers=headers,
                                         method="POST")
        with OPENER.open(request, timeout=seconds) as answer:
            answer.read(65536)
            status = answer.status
    except urllib.error.HTTPError as failure:
        status, error = failure.code, f"HTTP {failure.code}"
    except TargetRefused as refused:
        error = str(refused)
    except (urllib.error.URLError, OSError, ValueError) as failure:
        reason = getattr(failure, "reason", failure)
        error = f"{type(reason).__name__}: {reason}"[:500]
    if status is not None and not 200 <= status < 300 and error is None:
        error = f"HTTP {status}"
    return Attempt(iso(moment), status, round((time.monotonic() - started) * 1000), error)


class Dispatcher:
    """Works through the due deliveries; `run_once` is one pass."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utc_now,
                 send: Callable[[str, dict[str, str], str, float], Attempt] = post) -> None:
        self.engine = engine
        self.clock = clock
        self.send = send
        self.owner = uuid4().hex

    def run_once(self) -> int:
        """Attempt every due delivery at the head of its subscription's queue, several
        subscriptions at once (a slow receiver does not hold up the others); how many."""
        claimed = [row for seq in self._heads() if (row := self._claim(seq)) is not None]
        if claimed:
            with ThreadPoolExecutor(max_workers=min(PARALLEL, len(claimed))) as pool:
                list(pool.map(self._deliver, claimed))
        return len(claimed)

    def _heads(self) -> list[int]:
        """Each subscription's oldest pending delivery, if due and not leased."""
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(select(deliveries.c.seq, deliveries.c.webhook_uuid,
                                       deliveries.c.next_attempt_at, deliveries.c.lease_until)
                                .where(deliveries.c.state == "pending")
                                .order_by(deliveries.c.seq)).all()
        heads: dict[str, Any] = {}
        for row in rows:
            heads.setdefault(row.webhook_uuid, row)
        return [row.seq for row in heads.values() if aware(row.next_attempt_at) <= now
                and (row.lease_until is None or aware(row.lease_until) < now)]

    def _claim(self, seq: int) -> Any:
        """Lease the delivery if no other dispatcher holds it; its details if we won."""
        now = self.clock()
        lease = now + timedelta(seconds=lease_seconds())
        with self.engine.begin() as conn:
            won = conn.execute(update(deliveries).where(
                deliveries.c.seq == seq, deliveries.c.state == "pending",
                deliveries.c.next_attempt_at <= now,
                deliveries.c.lease_until.is_(None) | (deliveries.c.lease_until < now))
                .values(lease_until=lease, lease_owner=self.owner))
            if won.rowcount != 1:
                return None
            return conn.execute(
                select(deliveries, webhooks.c.url, webhooks.c.secret, notifications.c.type,
                       notifications.c.created.label("notified"),
                       notifications.c.data)
                .join(webhooks, webhooks.c.uuid == deliveries.c.webhook_uuid)
                .join(notifications, notifications.c.id == deliveries.c.notification_id)
                .where(deliveries.c.seq == seq)).first()

    def _deliver(self, row: Any) -> None:
        content = body(_Notification(row.type, row.notified, row.data), public_url())
        stamp = int(self.clock().timestamp())
        attempt = self.send(row.url, signing.headers(row.secret, row.notification_id, stamp,
                                                     content), content, timeout())
        self._record(row, attempt)

    def _record(self, row: Any, attempt: Attempt) -> None:
        schedule = retry_schedule()
        tries = row.tries + 1
        values: dict[str, Any] = {
            "attempts": json.dumps([*json.loads(row.attempts), vars(attempt)]),
            "tries": tries, "lease_until": None, "lease_owner": None}
        healthy: bool | None = None
        if attempt.ok:
            values["state"], healthy = "delivered", True
        elif tries > len(schedule):
            values["state"], healthy = "failed", False
        else:
            gap = schedule[tries - 1] * random.uniform(1 - JITTER, 1 + JITTER)
            values["next_attempt_at"] = self.clock() + timedelta(seconds=gap)
        with self.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.seq == row.seq,
                                                  deliveries.c.lease_owner == self.owner)
                         .values(**values))
            if healthy is not None:
                conn.execute(update(webhooks).where(webhooks.c.uuid == row.webhook_uuid)
                             .values(healthy=healthy))


@dataclass
class _Notification:
    type: str
    created: datetime
    data: str
