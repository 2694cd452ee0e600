"""Command keys (the API's Idempotency-Key) recorded in the event store: exactly once.

A keyed command saves a KeyedCommand, whose id derives from the caller and the key, in the
same atomic save as its own events: the key is recorded if and only if the command is.
Before executing, a keyed command looks for that record; when it is there, the command is
not run again and what it returned the first time is returned instead. So a command runs
at most once per key, whatever crashed when, and a retry gets the same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


def key_id(owner: str, key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/credit-ledger/command-keys/{owner}/{key}")


@dataclass(frozen=True)
class CommandKey:
    """Who sent the command, under which key, and a fingerprint of the request."""

    owner: str
    key: str
    fingerprint: str

    @property
    def id(self) -> UUID:
        return key_id(self.owner, self.key)


class KeyedCommand(Aggregate):
    """The record of a command executed under a key, and what it returned.

    ``result`` is the command's return value (ids, consumption results, a close result),
    transcoded like any event attribute; the read models ignore this aggregate.
    """

    @staticmethod
    def create_id(owner: str, key: str) -> UUID:
        return key_id(owner, key)

    @event("Executed")
    def __init__(self, owner: str, key: str, fingerprint: str, result: Any) -> None:
        self.owner = owner
        self.key = key
        self.fingerprint = fingerprint
        self.result = result
