"""First-match dispatch of events to handlers, in registration order.

functools.singledispatch picks by MRO, and eventsourcing puts the aggregate's own Event
class early in every event's MRO, so a generic handler would shadow specific ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from projections.changes import Changes

Handler = Callable[[Any, Changes, int], None]


class Dispatch:
    """Calls the first handler whose event class matches; ignores the rest."""

    def __init__(self) -> None:
        self.handlers: list[tuple[tuple[type, ...], Handler]] = []

    def on(self, *classes: type) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.handlers.append((classes, handler))
            return handler

        return register

    def __call__(self, event: Any, changes: Changes, position: int) -> None:
        for classes, handler in self.handlers:
            if isinstance(event, classes):
                handler(event, changes, position)
                return
