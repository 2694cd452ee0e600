"""A world with months of history, written in-process under a travelling clock, for the
console's browser tests and screenshots: then a live server reads it with today's clock.

Org (owned by `owner`) has projects Alpha, Beta and Gamma, usage every month and closed
months; a second organisation carries a hostile name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import falcon.testing
import time_machine

from api.app import create_app
from api.server.wiring import build_services
from ledger.periods import Period
from tests.support import Directory, noon

HOSTILE = "<img src=x onerror=alert(1)>"


def month_day(period: Period, day: int) -> date:
    return period.first_day.replace(day=day)


def build_world(url: str, today: date) -> dict[str, Any]:
    """Six months of history ending last month; returns names to uuids and user tokens."""
    services = build_services(url, create_tables=True)
    try:
        directory = Directory(services, falcon.testing.TestClient(create_app(services)))
        first = Period.of(today)
        for _ in range(6):
            first = first.previous()
        world: dict[str, Any] = {}

        def at(day: date, step: Callable[[], None]) -> None:
            with time_machine.travel(noon(day), tick=True):
                step()

        at(month_day(first, 10), lambda: _open(directory, world))
        period = first
        for month in range(5):
            after = period.next()
            at(month_day(after, 3), partial(_month, directory, world, period, month))
            period = after
        at(month_day(period, 12), partial(_consume, directory, world, period, 5))
        at(today, lambda: _users(directory, world))
        return world
    finally:
        services.close()


def _open(directory: Directory, world: dict[str, Any]) -> None:
    org = directory.customer("Org")
    world["org"] = org["uuid"]
    world["projects"] = {name: directory.project(org, name) for name in
                         ("Alpha", "Beta", "Gamma")}
    world["org_credit"] = directory.customer_credit(org, "5000")["uuid"]
    world["credits"] = {name: directory.project_credit(world["projects"][name], value)["uuid"]
                        for name, value in (("Alpha", "1500"), ("Beta", "900"))}
    hostile = directory.customer(HOSTILE)
    world["hostile"] = hostile["uuid"]
    directory.customer_credit(hostile, "75")
    world["hostile_project"] = directory.project_credit(
        directory.project(hostile, HOSTILE), "25")["uuid"]


def _consume(directory: Directory, world: dict[str, Any], period: Period, month: int) -> None:
    projects = world["projects"]
    directory.post("/api/consumptions/", [
        {"id": f"{name}-{period}", "project": projects[name]["url"],
         "amount": str(amount + 17 * month), "period": str(period)}
        for name, amount in (("Alpha", 210), ("Beta", 160), ("Gamma", 95))])


def _month(directory: Directory, world: dict[str, Any], period: Period, month: int) -> None:
    """Last month's usage posted and the month closed; a top-up in the third month."""
    _consume(directory, world, period, month)
    directory.post(f"/api/billing-periods/{period}/close/", {})
    if month == 2:
        result = directory.client.simulate_patch(
            f"/api/customer-credits/{world['org_credit']}/", json={"value": "5600"},
            headers=directory.staff)
        assert result.status_code == 200, result.text


def _users(directory: Directory, world: dict[str, Any]) -> None:
    directory.user("owner")
    directory.user("stranger")
    directory.grant("owner", "customer", world["org"], "owner")
    world["tokens"] = {name: directory.tokens[name] for name in ("staff", "owner", "stranger")}
