"""The plumbing every command shares: transcodings, loading, and retried atomic saves.

Each command loads the aggregates it touches, lets them check their rules, and saves
every changed aggregate in one atomic save. A concurrent writer makes the save fail on
the version check; the command is then re-run on fresh state a bounded number of times.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import date
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Recording, Transcoding

from ledger.errors import Conflict, KeyReused, NotFound
from ledger.keys import CommandKey, KeyedCommand
from ledger.loading import CopyingRepository, load_many, remember
from ledger.periods import Period
from ledger.terms import Terms

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
MAX_ATTEMPTS = 12
# A lost version check waits a random time below FIRST_BACKOFF * 2**attempt seconds, at
# most MAX_BACKOFF: doubling spreads writers that keep colliding on one organisation's
# credit (a linear spread up to 60 ms let one of eight writers lose twelve times in a row
# in a fresh clone's suite and answer 409), and the cap bounds a command's waiting to
# about a second in all.
FIRST_BACKOFF = 0.005
MAX_BACKOFF = 0.15


class DateAsISO(Transcoding):
    """eventsourcing does not transcode datetime.date by default."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class TermsAsDict(Transcoding):
    """Credit aggregates hold Terms; snapshots (every 100 events) must encode them."""

    type = Terms
    name = "credit_terms"

    def encode(self, obj: Terms) -> dict[str, Any]:
        return obj.as_kwargs()

    def decode(self, data: dict[str, Any]) -> Terms:
        return Terms(**data)


class DataclassAsDict(Transcoding):
    """A command's result recorded with its key (ledger.keys): a frozen dataclass."""

    def __init__(self, cls: type) -> None:
        self.type = cls
        self.name = f"result_{cls.__name__}"

    def encode(self, obj: Any) -> dict[str, Any]:
        return {field.name: getattr(obj, field.name) for field in fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


class Unit:
    """The aggregates one command has loaded (each once) and changed."""

    def __init__(self, app: LedgerBase) -> None:
        self.app = app
        self.loaded: dict[UUID, Aggregate] = {}

    def get(self, aggregate_id: UUID, cls: type[A]) -> A:
        if aggregate_id not in self.loaded:
            self.loaded[aggregate_id] = self.app.get(aggregate_id, cls)
        aggregate = self.loaded[aggregate_id]
        assert isinstance(aggregate, cls)
        return aggregate

    def prefetch(self, wanted: dict[UUID, type[Aggregate]]) -> None:
        """Load many aggregates at once (ledger.loading); any of another type, deleted or
        missing is left out, for ``get`` to refuse as usual."""
        missing = {i: cls for i, cls in wanted.items() if i not in self.loaded}
        for aggregate_id, aggregate in load_many(self.app, missing).items():
            if (isinstance(aggregate, wanted[aggregate_id])
                    and not getattr(aggregate, "deleted", False)):
                self.loaded[aggregate_id] = aggregate

    def add(self, aggregate: A) -> A:
        self.loaded[aggregate.id] = aggregate
        return aggregate

    def changed(self) -> bool:
        return any(aggregate.pending_events for aggregate in self.loaded.values())

    def save(self) -> None:
        """Save what changed: eventsourcing checks every object it is given against
        runtime Protocols (~20 µs each), and an aggregate that was only read records
        nothing: a single-item post passed five where three changed."""
        changed = [aggregate for aggregate in self.loaded.values() if aggregate.pending_events]
        self.app.save(*changed)
        remember(self.app, changed)


class SaveObserver:
    """Told what the store did: events saved, saves retried, conflicts given up on.

    The domain knows no metrics library; the API layer plugs its counters in here.
    """

    def saved(self, events: Sequence[Any]) -> None:
        """Events now in the store, in order."""

    def retried(self) -> None:
        """A save lost the version check to a concurrent writer and will be re-run."""

    def gave_up(self) -> None:
        """A command lost every attempt and answers Conflict."""


def _brand_new(aggregate: Aggregate) -> bool:
    """Created in this process under a random id (uuid4), nothing of it stored yet."""
    return aggregate.id.version == 4 and len(aggregate.pending_events) == aggregate.version


class LedgerBase(Application[UUID]):
    """Loading and saving for the command groups that make up the Ledger."""

    observer: SaveObserver = SaveObserver()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved = threading.local()
        self._keys = threading.local()

    # --- command keys (ledger.keys) ----------------------------------------------------------

    def use_key(self, key: CommandKey | None) -> None:
        """The key this thread's next command runs under (None: unkeyed)."""
        self._keys.current = key

    def current_key(self) -> CommandKey | None:
        return getattr(self._keys, "current", None)

    @contextmanager
    def unkeyed(self) -> Iterator[None]:
        """Steps of a keyed command that are not its last save run without the key."""
        key = self.current_key()
        self.use_key(None)
        try:
            yield
        finally:
            self.use_key(key)

    def executed(self) -> KeyedCommand | None:
        """The record of the current key's command, if it already ran; the key is used up
        either way once it is found.

        Found, its events were saved with it, perhaps by another process: this thread's
        read-your-writes position moves to the log's end, which they are before, so the
        answer rebuilt from the record waits for them like the first run's did."""
        key = self.current_key()
        if key is None:
            return None
        try:
            record = self.get(key.id, KeyedCommand)
        except NotFound:
            return None
        if record.fingerprint != key.fingerprint:
            raise KeyReused("This Idempotency-Key was used with a different request.")
        self.use_key(None)
        self._saved.position = self.recorder.max_notification_id() or 0
        return record

    def construct_repository(self) -> CopyingRepository:
        """Cached aggregates stay as cached (ledger.loading reads them without a lock)."""
        plain = super().construct_repository()
        return CopyingRepository(
            event_store=plain.event_store, snapshot_store=plain.snapshot_store,
            cache_maxsize=None if plain.cache is None else getattr(plain.cache, "maxsize", 0),
            fastforward=plain.fastforward, fastforward_skipping=plain.fastforward_skipping,
            deepcopy_from_cache=plain.deepcopy_from_cache)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(TermsAsDict())
        transcoder.register(DataclassAsDict(Period))

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Remember (per thread) the position of the last save, for read-your-writes, and
        tell the observer what was saved."""
        created = [obj for obj in objs if isinstance(obj, Aggregate) and _brand_new(obj)]
        try:
            recordings = super().save(*objs, **kwargs)
        except IntegrityError:
            if not created or len(created) != len(objs) or not self._all_stored(created):
                raise
            # eventsourcing retries an insert whose connection broke at commit: when the
            # first attempt did commit, the retry meets its own rows. Streams under fresh
            # random ids can only be this save's, so it did land.
            self._saved.position = self.recorder.max_notification_id() or 0
            return []
        if recordings:
            self._saved.position = max(r.notification.id for r in recordings)
        self.observer.saved([recording.domain_event for recording in recordings])
        return recordings

    def _all_stored(self, aggregates: list[Aggregate]) -> bool:
        return all(self.recorder.select_events(a.id, limit=1) for a in aggregates)

    def last_saved_position(self) -> int:
        """The notification id of this thread's last save (0 before any)."""
        return int(getattr(self._saved, "position", 0))

    def get(self, aggregate_id: UUID, cls: type[A]) -> A:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"No {cls.__name__} {aggregate_id.hex}.") from None
        if not isinstance(aggregate, cls) or getattr(aggregate, "deleted", False):
            raise NotFound(f"No {cls.__name__} {aggregate_id.hex}.")
        return aggregate

    def retrying(self, command: Callable[[Unit], T], attempts: int = MAX_ATTEMPTS) -> T:
        """Run a command on fresh state until its save wins the version check.

        Under a key (use_key) a command that already ran returns its first result, and
        one that changes something saves the key's record in the same atomic save."""
        for attempt in range(attempts):
            if (done := self.executed()) is not None:
                return cast(T, done.result)
            unit = Unit(self)
            result = command(unit)
            key = self.current_key()
            if key is not None and unit.changed():
                unit.add(KeyedCommand(owner=key.owner, key=key.key,
                                      fingerprint=key.fingerprint, result=result))
            try:
                unit.save()
                if key is not None:
                    self.use_key(None)
                return result
            except IntegrityError:
                self.observer.retried()
                time.sleep(random.uniform(0, min(MAX_BACKOFF, FIRST_BACKOFF * 2**attempt)))
        self.observer.gave_up()
        raise Conflict("The credit was changed concurrently; please retry.")

    def live(self, unit: Unit, aggregate_id: UUID | None, cls: type[A]) -> A | None:
        """The aggregate if it exists and is not deleted; None otherwise."""
        if aggregate_id is None:
            return None
        try:
            return unit.get(aggregate_id, cls)
        except NotFound:
            return None
