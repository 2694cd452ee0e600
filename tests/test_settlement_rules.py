"""Settlement a finance team can trust: floors only for months a credit existed, months
close in order. Through the HTTP API and the CLI, with events recorded on the fake clock's
days (time-machine), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from api.cli import main
from api.server.wiring import Services
from ledger.consumption import BillingCalendar
from ledger.errors import Conflict, PeriodClosed
from ledger.periods import Period
from tests.support import Clock, Directory
from tests.test_settlement_api import close, get, item, post_items


def try_close(directory: Directory, period: str) -> Any:
    return directory.client.simulate_post(f"/api/billing-periods/{period}/close/",
                                          headers=directory.staff)


def values(directory: Directory, *credits: dict[str, Any]) -> list[str]:
    return [get(directory, credit)["value"] for credit in credits]


def test_floor_charged_only_for_months_the_credit_existed(directory: Directory,
                                                          clock: Clock) -> None:
    clock.today = date(2026, 9, 10)
    org = directory.customer("Org")
    old, new = directory.project(org, "Old"), directory.project(org, "New")
    directory.customer_credit(org, "1000")
    since_september = directory.project_credit(old, "300", expected_consumption="100")
    clock.today = date(2026, 11, 15)
    since_november = directory.project_credit(new, "300", expected_consumption="100")
    clock.today = date(2026, 12, 2)
    for month in ("2026-09", "2026-10"):
        assert close(directory, month)["already_closed"] is False
    # the November credit did not exist in September or October: no floor for them
    assert values(directory, since_september, since_november) == ["100.00000", "300.00000"]
    close(directory, "2026-11")  # created during November: pays November's floor
    assert values(directory, since_september, since_november) == ["0.00000", "200.00000"]


def test_closing_a_month_twice_changes_no_balance(directory: Directory, clock: Clock) -> None:
    clock.today = date(2026, 10, 5)
    org = directory.customer("Org")
    cc = directory.customer_credit(org, "1000", expected_consumption="100")
    clock.today = date(2026, 11, 5)
    assert close(directory, "2026-10")["already_closed"] is False
    assert values(directory, cc) == ["900.00000"]
    again = close(directory, "2026-10")
    assert (again["already_closed"], again["customers_settled"]) == (True, 0)
    assert values(directory, cc) == ["900.00000"]


def test_months_close_in_order_from_the_first_month_with_activity(
        directory: Directory, clock: Clock) -> None:
    clock.today = date(2026, 9, 10)
    org = directory.customer("Org")
    cc = directory.customer_credit(org, "1000", expected_consumption="100")
    clock.today = date(2026, 12, 2)
    before = try_close(directory, "1999-01")
    assert (before.status_code, before.json) == (409, {"detail": (
        "Billing period 1999-01 is before the ledger's first month with activity; "
        "the first month is 2026-09.")})
    skipping = try_close(directory, "2026-10")
    assert (skipping.status_code, skipping.json) == (409, {"detail": (
        "Billing period 2026-10 cannot be closed yet: months close in order, and the next "
        "month to close is 2026-09.")})
    assert values(directory, cc) == ["1000.00000"]
    close(directory, "2026-09")
    close(directory, "2026-10")
    for backwards in ("2026-08", "2026-09"):  # before the first month; closed, not latest
        refused = try_close(directory, backwards)
        assert (refused.status_code, refused.json["detail"]) == (409, (
            f"Billing period {backwards} cannot be closed: months close in order, and the "
            "next month to close is 2026-11."))
    assert values(directory, cc) == ["800.00000"]
    periods = directory.client.simulate_get("/api/billing-periods/", headers=directory.staff)
    assert [(p["period"], p["state"]) for p in periods.json] == [
        ("2026-09", "closed"), ("2026-10", "closed")]


def test_the_first_month_moves_back_to_the_earliest_period_posted_for(
        directory: Directory, clock: Clock) -> None:
    clock.today = date(2026, 11, 10)
    project = directory.project(directory.customer("Org"), "P")
    post_items(directory, item("old", project, "5", "2026-07"))
    refused = try_close(directory, "2026-11")
    assert (refused.status_code, refused.json["detail"]) == (409, (
        "Billing period 2026-11 cannot be closed yet: months close in order, and the next "
        "month to close is 2026-07."))
    assert close(directory, "2026-07")["already_closed"] is False


def test_posting_at_or_before_the_latest_closed_month_is_refused(
        directory: Directory, clock: Clock) -> None:
    clock.today = date(2026, 10, 10)
    org = directory.customer("Org")
    project = directory.project(org, "P")
    cc = directory.customer_credit(org, "1000")
    clock.today = date(2026, 11, 10)
    close(directory, "2026-10")
    for period in ("2026-10", "2026-09", "1999-01"):
        refused = directory.client.simulate_post(
            "/api/consumptions/", json=[item(f"i-{period}", project, "5", period)],
            headers=directory.staff)
        assert (refused.status_code, refused.json) == (
            409, {"detail": f"Billing period {period} is closed."})
    assert values(directory, cc) == ["1000.00000"]
    assert post_items(directory, item("now", project, "5", "2026-11"))[0][
        "drawn_from_customer_credit"] == "5.00000"


def test_credit_recorded_after_its_end_date_expires_when_its_month_closes(
        directory: Directory, clock: Clock) -> None:
    clock.today = date(2026, 9, 10)
    org = directory.customer("Org")
    directory.customer_credit(org, "1000")
    clock.today = date(2026, 10, 20)
    late = directory.project_credit(directory.project(org, "P"), "200",
                                    end_date="2026-08-01")
    clock.today = date(2026, 11, 2)
    close(directory, "2026-09")
    assert values(directory, late) == ["200.00000"]  # it did not exist in September
    close(directory, "2026-10")
    assert values(directory, late) == ["0.00000"]


def test_close_period_through_closes_each_month_in_order(
        directory: Directory, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    clock.today = date(2026, 8, 10)
    org = directory.customer("Org")
    cc = directory.customer_credit(org, "1000", expected_consumption="100")
    clock.today = date(2026, 11, 26)
    assert main(["close-period", "--through", "2026-10"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Closed billing period 2026-{month}: settled 1 customers." for month in ("08", "09",
                                                                              "10")]
    assert values(directory, cc) == ["700.00000"]
    assert main(["close-period", "--through", "2026-10"]) == 0
    assert capsys.readouterr().out == (
        "No month through 2026-10 is open to close; nothing changed (the next month to "
        "close is 2026-11).\n")
    assert values(directory, cc) == ["700.00000"]


def test_verify_warns_about_gaps_left_by_earlier_releases(
        services: Services, monkeypatch: pytest.MonkeyPatch, database_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    legacy = BillingCalendar()
    for period in ("2026-10", "2026-07"):  # what an earlier release allowed
        legacy._closed(period=period, actor="staff")
    services.ledger.save(legacy)
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "Warning: billing periods were closed out of order: 2026-10, 2026-07." in out
    assert ("Warning: billing periods 2026-08, 2026-09 are open between closed ones" in out)
    calendar = services.ledger.calendar()
    with pytest.raises(PeriodClosed):
        calendar.check_open(Period(2026, 8))
    with pytest.raises(Conflict, match="the next month to close is 2026-11"):
        calendar.check_closable(Period(2026, 9), None)


def test_calendar_rules_are_checked_in_commands_not_on_replay() -> None:
    calendar = BillingCalendar()
    with pytest.raises(Conflict, match="Nothing has been recorded yet"):
        calendar.close(Period(2026, 1), None, "staff")
    calendar.extend_activity(Period(2026, 3), "staff")
    calendar.extend_activity(Period(2026, 5), "staff")  # later than known: nothing recorded
    assert calendar.first_month(Period(2026, 4)) == Period(2026, 3)
    assert calendar.first_month(Period(2026, 2)) == Period(2026, 2)
    calendar.close(Period(2026, 3), Period(2026, 4), "staff")
    with pytest.raises(Conflict, match="next month to close is 2026-04"):
        calendar.close(Period(2026, 5), None, "staff")
    events = calendar.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Started", "ActivityExtended", "PeriodClosed"]
