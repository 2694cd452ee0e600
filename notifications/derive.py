"""Which notifications an event causes, given what the notifier knows of its credit.

Pure functions of (state, event): replaying the same events gives the same notifications
with the same ids, so a replay or a second notifier never records a crossing twice.

- ``credit.balance_low``: the balance went below a threshold (not 0) that was armed; the
  threshold re-arms once the balance is at or above it again (a top-up).
- ``credit.exhausted``: the balance reached 0 by usage or a grant (threshold 0 means this).
- ``credit.terminated``: the project was terminated; its unused credit was written off or
  went back to the organisation.
- ``period.closed`` / ``period.reopened``: staff closed or re-opened a billing period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from ledger import thresholds
from ledger.consumption import BillingCalendar
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.money import ZERO, format_money

NAMESPACE = uuid5(NAMESPACE_URL, "credit-ledger/notifications")
QUIET = (Credit.Deleted, ProjectCredit.Released, Credit.Expired, Credit.WrittenOff)
GRANTS = (Credit.Granted, CustomerCredit.WithdrawableAdjusted)
TYPES = ("credit.balance_low", "credit.exhausted", "credit.expiring", "credit.expired",
         "credit.terminated", "period.closed", "period.reopened")
TEST = "webhook.test"


@dataclass(frozen=True)
class Notice:
    """One notification to record (if its id is new)."""

    id: str
    type: str
    customer_uuid: str | None
    data: dict[str, Any]


def notice_id(*parts: Any) -> str:
    """Stable: the causing stream, version and what was crossed name it."""
    return uuid5(NAMESPACE, ":".join(str(part) for part in parts)).hex


def credit_links(state: dict[str, Any]) -> dict[str, str]:
    collection = "customer-credits" if state["is_org"] else "project-credits"
    path = f"/api/{collection}/{state['uuid']}/"
    return {"credit": path, "history": path + "history/"}


def credit_data(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The credit as a notification shows it: which one, whose, and links to it."""
    return {
        "credit": {"uuid": state["uuid"],
                   "kind": "customer_credit" if state["is_org"] else "project_credit",
                   "customer_uuid": state["customer_uuid"],
                   "project_uuid": state["project_uuid"]},
        "links": credit_links(state), **extra}


def created_state(event: Any) -> dict[str, Any]:
    is_org = isinstance(event, CustomerCredit.Created)
    return {"uuid": event.originator_id.hex, "is_org": is_org,
            "customer_uuid": event.customer_id.hex,
            "project_uuid": None if is_org else event.project_id.hex,
            "balance": Decimal(event.value), "granted": Decimal(event.value),
            "thresholds": "[]", "below": "[]", "exhausted": False,
            "end_date": event.terms.get("end_date"), "deleted": False}


def apply_credit_event(state: dict[str, Any], event: Any) -> list[Notice]:
    """Fold one credit event into `state` (in place); the notices it causes."""
    if isinstance(event, Credit.ThresholdsChanged):
        state["thresholds"] = json.dumps(event.thresholds)
        # Thresholds the balance is already under are not news: armed once it is above.
        state["below"] = json.dumps(_under(state, event.thresholds, state["balance"]))
        return []
    if isinstance(event, Credit.TermsChanged):
        state["end_date"] = event.end_date
        return []
    if isinstance(event, ProjectCredit.Moved):
        moved: Any = event
        state["project_uuid"] = moved.project_id.hex
        return []
    if not isinstance(event, Credit.BalanceChanged):
        return []
    before = state["balance"]
    state["balance"] = after = before + event.amount
    if isinstance(event, GRANTS):
        state["granted"] += event.amount
    if isinstance(event, Credit.Deleted | ProjectCredit.Released):
        state["deleted"] = True  # gone, or its project's: no reminders about its end date
    if isinstance(event, ProjectCredit.Released):
        return [_terminated(state, event)]
    if isinstance(event, QUIET):
        return []
    return _crossings(state, event, after)


def _under(state: dict[str, Any], listed: list[str], balance: Decimal) -> list[str]:
    return [t for t in listed
            if not thresholds.is_zero(t) and balance < thresholds.amount(t, state["granted"])]


def _crossings(state: dict[str, Any], event: Any, balance: Decimal) -> list[Notice]:
    notices = []
    listed = json.loads(state["thresholds"])
    was_below = json.loads(state["below"])
    now_below = _under(state, listed, balance)
    for threshold in listed:  # highest first, as stored
        if threshold in now_below and threshold not in was_below:
            notices.append(_notice(state, event, "credit.balance_low", threshold, balance))
    state["below"] = json.dumps(now_below)
    if balance <= ZERO and not state["exhausted"]:
        state["exhausted"] = True
        zero = next((t for t in listed if thresholds.is_zero(t)), None)
        notices.append(_notice(state, event, "credit.exhausted", zero, balance))
    elif balance > ZERO:
        state["exhausted"] = False
    return notices


def _notice(state: dict[str, Any], event: Any, kind: str, threshold: str | None,
            balance: Decimal) -> Notice:
    return Notice(
        notice_id(event.originator_id, event.originator_version, kind, threshold or ""),
        kind, state["customer_uuid"],
        credit_data(state, threshold=threshold, balance=format_money(balance),
                    granted=format_money(state["granted"]), event=type(event).__qualname__,
                    event_version=event.originator_version))


def _terminated(state: dict[str, Any], event: Any) -> Notice:
    unused = -Decimal(event.amount)
    return Notice(
        notice_id(event.originator_id, event.originator_version, "credit.terminated"),
        "credit.terminated", state["customer_uuid"],
        credit_data(state, balance=format_money(state["balance"]),
                    written_off=format_money(unused if event.written_off else ZERO),
                    returned_to_organisation=format_money(ZERO if event.written_off
                                                          else unused)))


CALENDAR = (BillingCalendar.PeriodClosed, BillingCalendar.PeriodReopened)


def calendar_notice(event: Any) -> Notice | None:
    """period.closed / period.reopened: site-wide, for staff."""
    if isinstance(event, BillingCalendar.PeriodClosed):
        kind = "period.closed"
    elif isinstance(event, BillingCalendar.PeriodReopened):
        kind = "period.reopened"
    else:
        return None
    period: str = getattr(event, "period")  # noqa: B009 - declared by @event, not typed
    return Notice(notice_id(event.originator_id, event.originator_version, kind), kind, None,
                  {"period": period, "links": {"period": f"/api/billing-periods/{period}/"}})


def reminder_notices(state: dict[str, Any], today: Any, days: list[int]) -> list[Notice]:
    """credit.expiring on the nearest reminder day due before end_date; credit.expired
    from end_date on. Missed reminders are not sent late: only the nearest one is due."""
    end = state["end_date"]
    if end is None or state["deleted"]:
        return []
    left = (end - today).days
    data = credit_data(state, end_date=end.isoformat(), balance=format_money(state["balance"]))
    if left <= 0:
        return [Notice(notice_id(state["uuid"], "credit.expired", end), "credit.expired",
                       state["customer_uuid"], data)]
    due = [day for day in days if left <= day]
    if not due:
        return []
    day = min(due)
    return [Notice(notice_id(state["uuid"], "credit.expiring", end, day), "credit.expiring",
                   state["customer_uuid"], {**data, "days_before": day, "days_left": left})]
