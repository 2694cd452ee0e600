"""First-match dispatch of events to handlers, in registration order.

functools.singledispatch picks by MRO, and eventsourcing puts the aggregate's own Event
class early in every event's MRO, so a generic handler would shadow specific ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from projections.changes import Changes

Handler = Callable[[Any, Changes, int], None]


class Dispatch:
    """Calls the first handler whose event class matches; ignores the rest."""

    def __init__(self) -> None:
        self.handlers: list[tuple[tuple[type, ...], Handler]] = []
        self.chosen: dict[type, Handler | None] = {}  # by event class, found once

    def on(self, *classes: type) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.handlers.append((classes, handler))
            self.chosen.clear()
            return handler

        return register

    def handler_for(self, kind: type) -> Handler | None:
        """The handler events of this class go to (None: ignored), looked up once."""
        if kind not in self.chosen:
            self.chosen[kind] = next((handler for classes, handler in self.handlers
                                      if issubclass(kind, classes)), None)
        return self.chosen[kind]

    def __call__(self, event: Any, changes: Changes, position: int) -> None:
        handler = self.handler_for(type(event))
        if handler is not None:
            handler(event, changes, position)


def route(handlers: Iterable[Handler], kind: type) -> list[Handler]:
    """What an event class reaches: a Dispatch stands for its chosen handler or for nothing,
    so a batch calls only the few handlers that apply instead of asking every read model."""
    found = []
    for handler in handlers:
        chosen = handler.handler_for(kind) if isinstance(handler, Dispatch) else handler
        if chosen is not None:
            found.append(chosen)
    return found
