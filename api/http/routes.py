"""A route declared once: its URL template, the responder suffix, its OpenAPI path item.

Each resource class lists its `routes`; the app factory mounts them on Falcon and the
OpenAPI document is assembled from the same list, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import falcon

from api.http.schema import Json


@dataclass(frozen=True)
class Route:
    path: str
    item: Json  # the OpenAPI path item: operations by method, shared path parameters
    suffix: str | None = None  # Falcon's responder suffix: on_get_<suffix>


class Routed(Protocol):
    routes: Sequence[Route]


def mount(app: falcon.App, resource: Any) -> None:
    """Add every route the resource declares."""
    for route in resource.routes:
        app.add_route(route.path, resource, suffix=route.suffix)


def paths(resource_types: Sequence[Routed]) -> Json:
    """The document's paths: every declared route's path item, by URL template."""
    found: Json = {}
    for resource_type in resource_types:
        for route in resource_type.routes:
            if route.path in found:
                raise ValueError(f"{route.path} is declared twice")
            found[route.path] = route.item
    return found
