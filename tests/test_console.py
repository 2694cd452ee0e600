"""The console in headless Chromium against a live gunicorn, on SQLite and PostgreSQL.

Debian's chromium drives the pages through Playwright's Python package (never a browser
Playwright downloads). Every request the page makes is intercepted: one that leaves
loopback is aborted and recorded; dialogs and Content-Security-Policy reports are recorded
too. The screenshots the README links are saved from the SQLite run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ledger.periods import Period
from tests.conftest import BACKENDS
from tests.console_world import HOSTILE, build_world
from tests.live import Live, fresh_backend, live_server

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
FIGURES = ("opening", "created", "top_ups", "reductions", "withdrawable_adjustments",
           "consumed", "draws_reversed", "floor_draws", "expired", "written_off", "reversed",
           "adjustments", "closing")
LAPTOP, PHONE = (1280, 800), (390, 844)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@dataclass
class Console:
    live: Live
    world: dict[str, Any]
    backend: str

    def api(self, user: str, path: str, **params: Any) -> Any:
        found = httpx.get(self.live.url + path, params=params, timeout=30, headers={
            "Authorization": f"Token {self.world['tokens'][user]}"})
        assert found.status_code == 200, found.text
        return found.json()

    def balance_as_of(self, credit: str, moment: str) -> str:
        """What `?as_of=` answers; 0 before the credit existed (a 404 there)."""
        found = httpx.get(f"{self.live.url}/api/customer-credits/{credit}/", timeout=30,
                          params={"as_of": moment}, headers={
                              "Authorization": f"Token {self.world['tokens']['staff']}"})
        if found.status_code == 404:
            return "0.00000"
        assert found.status_code == 200, found.text
        return str(found.json()["value"])


@dataclass
class Watch:
    """What a page did that it must not: requests off loopback, dialogs, CSP reports."""

    leaks: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    api_auth: set[str] = field(default_factory=set)


@pytest.fixture(scope="module", params=BACKENDS)
def console(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    workdir = tmp_path_factory.mktemp("console")
    with fresh_backend(request, workdir) as url:
        world = build_world(url, date.today())
        with live_server(url, workdir) as live:
            yield Console(live, world, request.param)
            assert live.server_errors() == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


def open_page(browser: Any, watch: Watch, size: tuple[int, int] = LAPTOP) -> Any:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})

    def guard(route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob"):
            route.continue_()
        elif url.hostname not in ("127.0.0.1", "localhost"):
            watch.leaks.append(route.request.url)
            route.abort()
        else:
            if url.path.startswith("/api/"):
                watch.api_auth.add(route.request.headers.get("authorization", ""))
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    def dialog(opened: Any) -> None:
        watch.dialogs.append(opened.message)
        opened.dismiss()

    page.on("dialog", dialog)
    page.on("console", lambda message: watch.blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    return page


def sign_in(page: Any, console: Console, user: str, path: str = "/console/") -> None:
    page.goto(console.live.url + path)
    page.fill("#token", console.world["tokens"][user])
    page.click("form.signin button[type=submit]")


def texts(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def assert_nothing_escaped(watch: Watch) -> None:
    assert (watch.leaks, watch.dialogs, watch.blocked) == ([], [], [])


def test_staff_see_every_organisation_and_a_hostile_name_as_text(
        console: Console, browser: Any, watch: Watch) -> None:
    page = open_page(browser, watch)
    sign_in(page, console, "staff")
    page.wait_for_selector("#organisations tbody tr")
    assert sorted(texts(page, "#organisations tbody td:first-child")) == sorted(["Org", HOSTILE])
    assert page.evaluate("sessionStorage.getItem('credit-ledger.token')") == \
        console.world["tokens"]["staff"]
    page.goto(f"{console.live.url}/console/customers/{console.world['hostile']}/")
    page.wait_for_selector("#months")
    assert page.inner_text("h1") == HOSTILE
    page.goto(f"{console.live.url}/console/project-credits/{console.world['hostile_project']}/")
    page.wait_for_selector("#transactions tbody tr")
    assert page.inner_text("h1") == HOSTILE
    assert page.locator("main img").count() == 0
    page.goto(f"{console.live.url}/console/periods/")
    page.wait_for_selector("#totals")
    assert page.locator("#exports button").count() >= 4
    assert watch.api_auth == {f"Token {console.world['tokens']['staff']}"}
    assert_nothing_escaped(watch)


def test_an_owner_sees_only_their_organisation(console: Console, browser: Any,
                                                watch: Watch) -> None:
    page = open_page(browser, watch)
    sign_in(page, console, "owner")
    page.wait_for_selector("#organisations tbody tr")
    assert texts(page, "#organisations tbody td:first-child") == ["Org"]
    page.goto(f"{console.live.url}/console/customers/{console.world['hostile']}/")
    page.wait_for_selector("p.error")
    assert page.inner_text("p.error") == "No organisation credit you may see."
    page.goto(f"{console.live.url}/console/periods/")
    page.wait_for_selector("text=Reconciliation and exports are for staff and support.")
    assert_nothing_escaped(watch)


def test_a_stranger_sees_nothing(console: Console, browser: Any, watch: Watch) -> None:
    page = open_page(browser, watch)
    sign_in(page, console, "stranger", f"/console/customers/{console.world['org']}/")
    page.wait_for_selector("p.error")
    assert page.inner_text("p.error") == "No organisation credit you may see."
    page.goto(f"{console.live.url}/console/")
    page.wait_for_selector("#organisations p.muted")
    assert page.inner_text("#organisations p.muted") == "Nothing here."
    assert_nothing_escaped(watch)


def test_a_bad_token_shows_the_form_again_and_sign_out_forgets_the_token(
        console: Console, browser: Any, watch: Watch) -> None:
    page = open_page(browser, watch)
    page.goto(console.live.url + "/console/periods/")
    page.fill("#token", "not-a-token")
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("p.error")
    assert page.inner_text("p.error") == "Invalid token."
    assert page.is_visible("#token")
    assert page.evaluate("sessionStorage.getItem('credit-ledger.token')") is None
    sign_in(page, console, "staff")
    page.wait_for_selector("#organisations tbody tr")
    page.get_by_role("button", name="Sign out").click()
    assert page.is_visible("#token")
    assert page.evaluate("sessionStorage.getItem('credit-ledger.token')") is None


def next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def test_the_chart_draws_as_of_balances_and_the_table_is_the_reconciliation(
        console: Console, browser: Any, watch: Watch) -> None:
    page = open_page(browser, watch)
    sign_in(page, console, "owner", f"/console/customers/{console.world['org']}/")
    page.wait_for_selector("#months tbody tr")
    page.wait_for_selector("#chart canvas")
    points = page.evaluate("JSON.parse(document.getElementById('chart').dataset.points)")
    credit = f"/api/customer-credits/{console.world['org_credit']}/"
    assert len(points) == 12 and points[-1]["month"] == f"{date.today():%Y-%m}"
    for point in points[:-1]:
        end = f"{next_month(point['month'])}-01T00:00:00Z"
        assert point["balance"] == console.balance_as_of(console.world["org_credit"], end)
    assert points[-1]["balance"] == console.api("staff", credit)["value"]
    closed = {p["period"] for p in console.api("staff", "/api/billing-periods/")
              if p["state"] == "closed"}
    assert {p["month"] for p in points if p["closed"]} == closed and len(closed) == 5
    for point in points:
        report = console.api("staff", "/api/reconciliation/", period=point["month"])
        row = next((r for r in report["rows"] if r["uuid"] == console.world["org_credit"]),
                   dict.fromkeys(FIGURES, "0.00000"))
        cells = page.locator(f"#months tr[data-month='{point['month']}'] td.num")
        values = cells.evaluate_all("cells => cells.map(c => c.dataset.value)")
        assert values == [row[name] for name in FIGURES], point["month"]
        shown = [Decimal(text.replace(",", "").replace("−", "-"))
                 for text in cells.all_inner_texts()]
        assert shown == [Decimal(row[name]) for name in FIGURES]
    assert_nothing_escaped(watch)


def test_an_owner_downloads_a_months_statement(console: Console, browser: Any,
                                               watch: Watch) -> None:
    page = open_page(browser, watch)
    sign_in(page, console, "owner", f"/console/customers/{console.world['org']}/")
    month = f"{Period.of(date.today()).previous().previous()}"
    page.wait_for_selector("#months")
    page.select_option("#statement-month", month)
    page.wait_for_selector("#statement table")
    with page.expect_download() as started:
        page.click("#statement button")
    rows = list(csv.DictReader(io.StringIO(Path(started.value.path()).read_text(
        encoding="utf-8-sig"))))
    statement = console.api("owner", f"/api/customer-credits/{console.world['org_credit']}"
                                     "/statement/", period=month)
    assert [(row["scope"], row["amount"]) for row in rows] == [
        (line["credit"], line["amount"]) for line in statement["lines"]]
    assert page.locator("#statement tbody tr").count() == len(statement["lines"]) > 0
    assert_nothing_escaped(watch)


def test_staff_download_a_closed_months_exports(console: Console, browser: Any,
                                                watch: Watch) -> None:
    """The periods page's downloads are the API's files, byte for byte."""
    page = open_page(browser, watch)
    month = f"{Period.of(date.today()).previous().previous()}"
    sign_in(page, console, "staff", f"/console/periods/?period={month}")
    page.wait_for_selector("#totals")
    headers = {"Authorization": f"Token {console.world['tokens']['staff']}"}
    for button, path, params in (
            ("Reconciliation CSV", "/api/reconciliation/csv/", {"period": month}),
            ("Journal CSV", "/api/journal/", {"through": month, "format": "csv"})):
        with page.expect_download() as started:
            page.get_by_role("button", name=button).click()
        served = httpx.get(console.live.url + path, params=params, headers=headers)
        assert Path(started.value.path()).read_bytes() == served.content, button
    journal = list(csv.reader(io.StringIO(served.text.lstrip("\ufeff"))))
    assert journal[0] == ["date", "transaction_id", "account", "debit", "credit", "currency",
                          "reference"] and len(journal) > 10
    assert_nothing_escaped(watch)


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_pages_fit_the_screen(console: Console, browser: Any, watch: Watch,
                              size: tuple[int, int]) -> None:
    """No page scrolls sideways; the SQLite run saves the README's screenshots."""
    page = open_page(browser, watch, size)
    world = console.world
    pages = {"organisations": ("/console/", "#organisations tbody tr"),
             "organisation": (f"/console/customers/{world['org']}/", "#statement table"),
             "credit": (f"/console/project-credits/{world['credits']['Alpha']}/",
                        "#transactions tbody tr"),
             "periods": ("/console/periods/", "#totals")}
    sign_in(page, console, "staff")
    for name, (path, ready) in pages.items():
        page.goto(console.live.url + path)
        if name == "organisation":  # its statement is loaded when a month is chosen
            page.wait_for_selector("#months")
            page.select_option("#statement-month", index=2)
        page.wait_for_selector(ready)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size[0], (name, width)
        if console.backend == "sqlite" and name in ("organisation", "credit"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(200)  # the chart draws on the next frame
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{size[0]}x{size[1]}.png"),
                            full_page=True)
    assert_nothing_escaped(watch)
