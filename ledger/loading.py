"""Loading many aggregates at once: the per-process cache, fast-forwarded in one query.

``repository.get`` costs one query per aggregate even when the aggregate is cached (it
asks the store for newer events). A batch touches hundreds of aggregates, so on
PostgreSQL the newer events of every cached aggregate are selected in one statement;
other stores (SQLite, in process) are asked aggregate by aggregate, which costs no
round trip. An aggregate that is not cached is replayed from its first event in the
same statement when its class is never snapshotted; one that is snapshotted starts from
its latest snapshot (all of them selected in one more statement on PostgreSQL, loaded by
``repository.get`` elsewhere).

The cached object is never handed out or changed: it is copied, the copy is brought up
to date and cached in its place, and the caller gets a copy of that, as
``repository.get`` does, so a command whose save fails leaves the cache correct. After a
successful save, the saved aggregates replace their cached copies (``remember``).

A cached object is never changed once cached, by anyone: eventsourcing's own
``Repository.get`` fast-forwards the cached object in place, which raced with this
module's lock-free reads (a copy taken half-way, or a version read before the object moved
on, replayed events it already had: OriginatorVersionError, a 500 under concurrent
postings). ``CopyingRepository`` fast-forwards a copy instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress
from copy import deepcopy
from typing import Any, cast
from uuid import UUID
from weakref import WeakSet

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProjectorFunction,
    Repository,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

# Both statements probe the primary key once per wanted aggregate (LATERAL, kept from
# being flattened by OFFSET 0 / LIMIT 1), so their cost follows the batch, not the store.
# A plain join let the planner merge-join or hash-join against every event: after a bulk
# import, before ANALYZE, that scanned the whole table on every batch (issue 18).
_NEWER_EVENTS = (
    "SELECT e.originator_id, e.originator_version, e.topic, e.state "
    "FROM unnest(%s::uuid[], %s::bigint[]) AS known(id, version) "
    "CROSS JOIN LATERAL (SELECT * FROM {schema}.{table} AS s "
    "WHERE s.originator_id = known.id AND s.originator_version > known.version "
    "OFFSET 0) AS e "
    "ORDER BY e.originator_id, e.originator_version"
)


_LATEST_SNAPSHOTS = (
    "SELECT s.originator_id, s.originator_version, s.topic, s.state "
    "FROM unnest(%s::uuid[]) AS wanted(id) "
    "CROSS JOIN LATERAL (SELECT * FROM {schema}.{table} AS t WHERE t.originator_id = wanted.id "
    "ORDER BY t.originator_version DESC LIMIT 1) AS s"
)


def load_many(app: Application[UUID], wanted: dict[UUID, type[Aggregate]],
              cache_new: bool = True) -> dict[UUID, Aggregate]:
    """The current state of each existing aggregate among ``wanted`` (id -> class).

    One query when every aggregate is cached or of a class that is never snapshotted
    (those are replayed from their first event in the same query); a snapshotted one
    that is not cached is loaded on its own by ``repository.get``. ``cache_new=False``
    leaves aggregates that were not cached out of the cache (one-off reads, so that
    they do not push out the credits).
    """
    known: dict[UUID, Aggregate | None] = {}
    found: dict[UUID, Aggregate] = {}
    uncached_snapshotted = []
    for aggregate_id, cls in wanted.items():
        hit = peek(app, aggregate_id)
        if hit is not None or not _snapshotted(app, cls):
            known[aggregate_id] = hit
        else:
            uncached_snapshotted.append(aggregate_id)
    if _on_postgres(app):
        known.update(latest_snapshots(app, uncached_snapshotted))
    else:
        for aggregate_id in uncached_snapshotted:
            with suppress(AggregateNotFoundError):
                found[aggregate_id] = app.repository.get(aggregate_id)
    newer = newer_events(app, {i: a.version if a else 0 for i, a in known.items()})
    for aggregate_id, aggregate in known.items():
        if newer[aggregate_id]:
            events = map(app.mapper.to_domain_event, newer[aggregate_id])
            aggregate = cast(Aggregate, replay(deepcopy(aggregate), events))
            if app.repository.cache is not None and (cache_new or known[aggregate_id] is not None):
                app.repository.cache.put(aggregate_id, aggregate)
        if aggregate is not None:
            found[aggregate_id] = deepcopy(aggregate)
    return found


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """eventsourcing's ``project_aggregate`` without its per-event
    ``isinstance(event, CanMutateProtocol)`` assertion: a runtime-checkable Protocol check
    recomputes the protocol's members each time, and was a tenth of a month close's CPU."""
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def _on_postgres(app: Application[UUID]) -> bool:
    return type(app.recorder).__module__ == "eventsourcing.postgres"


def latest_snapshots(app: Application[UUID],
                     aggregate_ids: list[UUID]) -> dict[UUID, Aggregate | None]:
    """Each aggregate's latest snapshot, as an aggregate (None: replay from the first
    event), in one query; the events after it come with the batch's other newer events."""
    found: dict[UUID, Aggregate | None] = dict.fromkeys(aggregate_ids)
    if not aggregate_ids or app.snapshots is None:
        return found
    from psycopg.sql import SQL, Identifier

    recorder: Any = app.snapshots.recorder
    statement = SQL(_LATEST_SNAPSHOTS).format(schema=Identifier(recorder.datastore.schema),
                                              table=Identifier(recorder.events_table_name))
    rows = _probe(recorder, statement, [aggregate_ids])
    for row in rows:
        snapshot = app.snapshots.mapper.to_domain_event(StoredEvent(
            originator_id=row["originator_id"], originator_version=row["originator_version"],
            topic=row["topic"], state=bytes(row["state"])))
        found[row["originator_id"]] = cast(Aggregate, replay(None, [snapshot]))
    return found


def _snapshotted(app: Application[UUID], cls: type[Aggregate]) -> bool:
    return any(issubclass(cls, kind) for kind in app.snapshotting_intervals)


def remember(app: Application[UUID], saved: Iterable[Aggregate]) -> None:
    """After a successful save an aggregate's state is the stored state: cache it as is,
    so the next load need not decode what was just written. Only aggregates already
    cached are replaced, so a batch's new items do not push the credits out."""
    cache = app.repository.cache
    for aggregate in saved:
        if cache is not None and peek(app, aggregate.id) is not None:
            cache.put(aggregate.id, aggregate)


def peek(app: Application[UUID], aggregate_id: UUID) -> Aggregate | None:
    """The cached state, not copied and perhaps behind the store: read it, never change it."""
    cache = app.repository.cache
    if cache is None:
        return None
    try:
        return cast(Aggregate, cache.get(aggregate_id))
    except KeyError:
        return None


def newer_events(app: Application[UUID],
                 versions: dict[UUID, int]) -> dict[UUID, list[StoredEvent]]:
    """Each aggregate's stored events after the given version."""
    recorder: Any = app.recorder
    found: dict[UUID, list[StoredEvent]] = defaultdict(list)
    if not versions:
        return found
    if not _on_postgres(app):
        for aggregate_id, version in versions.items():
            found[aggregate_id] = list(recorder.select_events(aggregate_id, gt=version))
        return found
    from psycopg.sql import SQL, Identifier

    statement = SQL(_NEWER_EVENTS).format(schema=Identifier(recorder.datastore.schema),
                                          table=Identifier(recorder.events_table_name))
    for row in _probe(recorder, statement, [list(versions), list(versions.values())]):
        found[row["originator_id"]].append(StoredEvent(
            originator_id=row["originator_id"], originator_version=row["originator_version"],
            topic=row["topic"], state=bytes(row["state"])))
    return found


_WITHOUT_JIT: WeakSet[Any] = WeakSet()  # pooled connections whose session has JIT off


def _probe(recorder: Any, statement: Any, params: list[Any]) -> list[Any]:
    """Run a per-aggregate probe without JIT: with stale statistics (a bulk import not
    yet analysed) its estimate is huge, and compiling it cost more than running it.

    JIT is turned off once per pooled connection, for its session: eventsourcing's own
    statements on it are short too. A transaction to scope the setting cost each probe
    three round trips more (BEGIN, SET LOCAL, COMMIT), and a posted item probes up to six
    times (issue 18)."""
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        if conn not in _WITHOUT_JIT:
            curs.execute("SET jit = off")
            _WITHOUT_JIT.add(conn)
        curs.execute(statement, params)
        return curs.fetchall()


class CopyingRepository(Repository[UUID]):
    """A repository whose cached aggregates are never changed in place (see the module
    docstring): a cache hit is copied, the copy fast-forwarded and cached in its place."""

    def get(self, aggregate_id: UUID, *, version: int | None = None,
            projector_func: ProjectorFunction[Any, Any] = replay,
            fastforward_skipping: bool = False, deepcopy_from_cache: bool = True) -> Any:
        if self.cache is None or version is not None or not self.fastforward:
            return super().get(aggregate_id, version=version, projector_func=projector_func,
                               fastforward_skipping=fastforward_skipping,
                               deepcopy_from_cache=deepcopy_from_cache)
        try:
            cached = self.cache.get(aggregate_id)
        except KeyError:
            aggregate = self._reconstruct_aggregate(aggregate_id, None, projector_func)
        else:
            newer = self.event_store.get(originator_id=aggregate_id, gt=cached.version)
            aggregate = projector_func(deepcopy(cached), newer)
            if aggregate is None:
                raise AggregateNotFoundError(aggregate_id)
        self.cache.put(aggregate_id, aggregate)
        return deepcopy(aggregate)


class CopiedByContainers:
    """A cheap ``deepcopy`` for aggregates whose state is immutable values in dicts and lists.

    Ids, dates, decimals, strings and Terms never change in place, so only the dicts and
    lists are copied; the generic deepcopy rebuilt every UUID and was most of the time
    a batch spent loading. An aggregate holding any other mutable value must not use this.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        clone = object.__new__(type(self))
        clone.__dict__.update({name: _copied(value) for name, value in vars(self).items()})
        return clone


def _copied(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value
