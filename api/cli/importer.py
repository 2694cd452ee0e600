"""`credit-ledger import waldur`: copy a Waldur (or any server speaking its API) into the ledger.

Reads offerings, customers, projects, organisation credits and project credits page by
page (300 a page, following the `Link` header's next page, `X-Result-Count` for the
totals), in the source's list order (created), so the ledger lists them in the same order.
Each page is parsed with the API's own field rules; every ~1,200 records are recorded as
one atomic save (ledger/importing.py); the next page is fetched while one is recorded.
Rejected records are named on stderr with their reason, differences with what the ledger
already holds on stdout, progress with totals on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit
from uuid import UUID

import click
import httpx

from api.cli.base import cli, database_option, ledger_services, refuse_stale
from api.http import fields
from api.http.forms import Field, clean
from api.resources.directory import NAME, SLUG, slugify
from api.resources.project_credits import term_fields
from api.server.wiring import Services
from ledger.importing import (
    CREATED,
    DIFFERS,
    REJECTED,
    CustomerCreditRecord,
    CustomerRecord,
    Importer,
    OfferingRecord,
    Outcome,
    ProjectCreditRecord,
    ProjectRecord,
    Record,
    Tally,
)
from ledger.terms import TERM_NAMES, Terms

PAGE_SIZE = 300
CHUNK = 1200  # records per atomic save: bigger saves amortise the store's round trips
TIMEOUT = 60.0
PROGRESS_EVERY = 2.0  # seconds between progress lines within one collection


Page = tuple[list[Any], int, str | None]  # items, X-Result-Count, next page's URL


class SourceError(Exception):
    """The source could not be read (unreachable, refused the token, not its API)."""


class BadRecord(Exception):
    """A source record that does not parse; the message names each field and problem."""


def uuid_field(raw: Any) -> UUID:
    if not isinstance(raw, str):
        raise fields.FieldError("Must be a valid UUID.")
    return fields.uuid_filter(raw)


def offering_list(raw: Any) -> tuple[OfferingRecord, ...]:
    if not isinstance(raw, list):
        raise fields.FieldError("Expected a list of offerings.")
    return tuple(parse_offering(item) for item in raw)


def parsed(item: Any, specs: list[Field]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise BadRecord(f"expected an object, got {type(item).__name__}")
    values, errors = clean(item, specs)
    if errors:
        raise BadRecord("; ".join(f"{name}: {' '.join(messages)}"
                                  for name, messages in errors.items()))
    return values


def terms_of(values: dict[str, Any]) -> Terms:
    return Terms().updated(**{k: v for k, v in values.items() if k in TERM_NAMES})


def parse_offering(item: Any) -> OfferingRecord:
    values = parsed(item, [Field("uuid", uuid_field, required=True),
                           Field("name", NAME, required=True),
                           Field("type", fields.string(100), required=True)])
    return OfferingRecord(values["uuid"], values["name"], values["type"])


def parse_customer(item: Any) -> CustomerRecord:
    values = parsed(item, [Field("uuid", uuid_field, required=True),
                           Field("name", NAME, required=True), Field("slug", SLUG)])
    return CustomerRecord(values["uuid"], values["name"],
                          values.get("slug") or slugify(values["name"]))


def parse_project(item: Any) -> ProjectRecord:
    values = parsed(item, [Field("uuid", uuid_field, required=True),
                           Field("name", NAME, required=True), Field("slug", SLUG),
                           Field("customer_uuid", uuid_field, required=True)])
    return ProjectRecord(values["uuid"], values["name"],
                         values.get("slug") or slugify(values["name"]), values["customer_uuid"])


def parse_customer_credit(item: Any) -> list[Record]:
    """The credit, after the offerings it names (recorded unless a list had them already)."""
    values = parsed(item, [Field("uuid", uuid_field, required=True),
                           Field("customer_uuid", uuid_field, required=True),
                           Field("value", fields.MONEY, required=True), *term_fields(),
                           Field("offerings", offering_list)])
    offerings = values.get("offerings", ())
    return [*offerings, CustomerCreditRecord(
        values["uuid"], values["customer_uuid"], values["value"], terms_of(values),
        tuple(o.uuid for o in offerings))]


def parse_project_credit(item: Any) -> ProjectCreditRecord:
    values = parsed(item, [Field("uuid", uuid_field, required=True),
                           Field("project_uuid", uuid_field, required=True),
                           Field("value", fields.MONEY, required=True), *term_fields(),
                           Field("mark_unused_credit_as_spent_on_project_termination",
                                 fields.boolean)])
    return ProjectCreditRecord(
        values["uuid"], values["project_uuid"], values["value"], terms_of(values),
        values.get("mark_unused_credit_as_spent_on_project_termination", False))


@dataclass(frozen=True)
class Collection:
    path: str
    kind: str
    parse: Callable[[Any], Record | list[Record]]


# In dependency order: what a record refers to is recorded before it.
COLLECTIONS = (
    Collection("marketplace-public-offerings", "offering", parse_offering),
    Collection("customers", "customer", parse_customer),
    Collection("projects", "project", parse_project),
    Collection("customer-credits", "customer credit", parse_customer_credit),
    Collection("project-credits", "project credit", parse_project_credit),
)


class WaldurSource:
    """Pages of one collection of a Waldur API, fetched one ahead of the caller."""

    def __init__(self, url: str, token: str, client: httpx.Client | None = None) -> None:
        self.base = url.rstrip("/")
        self.client = client or httpx.Client(timeout=TIMEOUT)
        self.headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self.seconds_waiting = 0.0

    def pages(self, path: str) -> Iterator[tuple[list[Any], int]]:
        """Each page's items and the collection's total (X-Result-Count)."""
        first = f"{self.base}/api/{path}/?page_size={PAGE_SIZE}"
        seen = {first}
        with ThreadPoolExecutor(max_workers=1) as fetcher:
            pending: Future[Page] | None = fetcher.submit(self._get, first)
            while pending is not None:
                started = time.perf_counter()
                items, total, next_url = pending.result()
                self.seconds_waiting += time.perf_counter() - started
                if next_url is not None:
                    _check_next(next_url, seen, items)
                    seen.add(next_url)
                pending = fetcher.submit(self._get, next_url) if next_url else None
                yield items, total

    def _get(self, url: str) -> Page:
        try:
            response = self.client.get(url, headers=self.headers)
        except httpx.HTTPError as error:
            raise SourceError(f"cannot read {url}: {error}") from None
        if response.status_code != 200:
            raise SourceError(f"{url} answered {response.status_code}: {response.text[:200]}")
        try:
            items = response.json()
        except ValueError:
            raise SourceError(f"{url} did not answer JSON") from None
        if not isinstance(items, list):
            raise SourceError(f"{url} did not answer a JSON list")
        total = int(response.headers.get("X-Result-Count", len(items)))
        return items, total, self._on_base(response.links.get("next", {}).get("url"))

    def _on_base(self, url: str | None) -> str | None:
        """Follow the next link's path and query, but only ever on the given base URL."""
        if not url:
            return None
        parts = urlsplit(url)
        return f"{self.base}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _check_next(next_url: str, seen: set[str], items: list[Any]) -> None:
    """A source whose pages link back, or go on empty, would be read forever."""
    if next_url in seen:
        raise SourceError(f"{next_url} was already read: the source's next links loop")
    if not items:
        raise SourceError(f"an empty page links to {next_url}: the source's pages never end")


class Run:
    """One import: reads every collection, records it, and prints what happened."""

    def __init__(self, services: Services, source: WaldurSource, actor: str,
                 out: TextIO, err: TextIO) -> None:
        self.services = services
        self.source = source
        self.out = out
        self.err = err
        self.importer = Importer(services.ledger, actor, self.report)
        self.seen_offerings: set[UUID] = set()

    def report(self, outcome: Outcome) -> None:
        if outcome.status == REJECTED:
            self.reject(outcome.record.kind, outcome.record.uuid.hex, outcome.message)
        elif outcome.status == DIFFERS:
            print(f"differs {outcome.record.kind} {outcome.record.uuid.hex}: {outcome.message}",
                  file=self.out)

    def reject(self, kind: str, name: str, reason: str) -> None:
        print(f"rejected {kind} {name}: {reason}", file=self.err, flush=True)

    def collection(self, collection: Collection) -> None:
        read, last_shown = 0, 0.0
        records: list[Record] = []
        for items, total in self.source.pages(collection.path):
            for position, item in enumerate(items, start=read + 1):
                try:
                    found = collection.parse(item)
                    records.extend(found if isinstance(found, list) else [found])
                except BadRecord as error:
                    self.importer.tally.add(collection.kind, REJECTED)
                    self.reject(collection.kind, _name(item, position), str(error))
            read += len(items)
            if len(records) >= CHUNK or read >= total:
                self.record(records)
                records = []
            if time.monotonic() - last_shown > PROGRESS_EVERY or read >= total:
                last_shown = time.monotonic()
                self.progress(collection, read, total)
        self.record(records)  # a source whose count was off still has every page recorded

    def record(self, records: list[Record]) -> None:
        """Each offering once: those organisation credits name may also be in the list."""
        fresh: list[Record] = []
        for record in records:
            if isinstance(record, OfferingRecord):
                if record.uuid in self.seen_offerings:
                    continue
                self.seen_offerings.add(record.uuid)
            fresh.append(record)
        if fresh:
            self.importer.record(fresh)

    def progress(self, collection: Collection, read: int, total: int) -> None:
        counts = self.importer.tally.counts.get(collection.kind, {})
        shown = ", ".join(f"{n} {status}" for status, n in counts.items())
        print(f"{collection.path}: {read}/{total} read ({shown or 'nothing recorded'})",
              file=self.err, flush=True)


def _name(item: Any, position: int) -> str:
    uuid = item.get("uuid") if isinstance(item, dict) else None
    return uuid if isinstance(uuid, str) and uuid else f"#{position}"


def run(services: Services, url: str, token: str, out: TextIO | None = None,
        err: TextIO | None = None, client: httpx.Client | None = None) -> int:
    """Import everything; 0 when all was recorded or already equal, 1 otherwise."""
    out, err = out or sys.stdout, err or sys.stderr
    started = time.perf_counter()
    source = WaldurSource(url, token, client)
    importer_run = Run(services, source, f"import:{source.base}", out, err)
    try:
        for collection in COLLECTIONS:
            importer_run.collection(collection)
    except SourceError as error:
        print(f"error: {error}", file=err)
        return 2
    finished = time.perf_counter()
    tally = importer_run.importer.tally
    summary(tally, out)
    credits = sum(tally.counts.get(kind, {}).get(CREATED, 0)
                  for kind in ("customer credit", "project credit"))
    recording = tally.recording_seconds or float("nan")
    print(f"Recorded {tally.total(CREATED)} records ({credits} credits) in {recording:.1f} s "
          f"on the ledger side: {credits / recording:.0f} credits/s, "
          f"{tally.total(CREATED) / recording:.0f} records/s. Whole import "
          f"{finished - started:.1f} s, {source.seconds_waiting:.1f} s of it waiting for the "
          "source.", file=out, flush=True)
    projected = services.projector.catch_up(lambda n: print(f"projected events: {n}", file=err))
    print(f"Projected {projected} events in {time.perf_counter() - finished:.1f} s.", file=out)
    services.projector.analyze()
    return 1 if tally.total(REJECTED) or tally.total(DIFFERS) else 0


def summary(tally: Tally, out: TextIO) -> None:
    for collection in COLLECTIONS:
        counts = tally.counts.get(collection.kind)
        if counts:
            print(f"{collection.path}: " + ", ".join(f"{n} {status}"
                                                    for status, n in counts.items()), file=out)


@cli.group("import")
def import_group() -> None:
    """Copy data into the ledger from another system."""


@import_group.command("waldur")
@click.option("--url", required=True, help="Base URL of a Waldur (or any server speaking its "
              "credits API), e.g. https://waldur.example.org.")
@click.option("--token", required=True, envvar="WALDUR_TOKEN",
              help="A staff API token of that server (env WALDUR_TOKEN).")
@database_option
def import_waldur(url: str, token: str, database_url: str) -> int:
    """Offerings, customers, projects and credits, keeping their uuids; a re-run records
    nothing and prints what differs. Exit 1 on rejected or differing records, 2 when the
    source cannot be read. A SQLite file that does not exist is created (and named)."""
    with ledger_services(database_url, create=True) as services:
        refuse_stale(services)
        return run(services, url, token)
