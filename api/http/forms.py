"""Validate a JSON body field by field, in declared order, collecting DRF-shaped errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from api.http.errors import validation_error
from api.http.fields import FieldError, Json, Parser, schema_of


@dataclass(frozen=True)
class Field:
    """One input field; ``check`` adds field-level rules (it may also raise an ApiError)."""

    name: str
    parse: Parser
    required: bool = False
    allow_null: bool = False
    check: Callable[[Any], None] | None = None
    description: str = ""

    @property
    def schema(self) -> Json:
        """The OpenAPI schema of the values this field accepts (null included if allowed)."""
        schema = dict(schema_of(self.parse))
        if self.description:
            schema["description"] = self.description
        if self.allow_null:
            schema["nullable"] = True
        return schema


def with_checks(fields: list[Field], **checks: Callable[[Any], None]) -> list[Field]:
    """The declared fields with this request's checks (lookups that need the database)."""
    unknown = set(checks) - {field.name for field in fields}
    assert not unknown, f"no such fields: {unknown}"
    return [replace(field, check=checks[field.name]) if field.name in checks else field
            for field in fields]


def object_schema(fields: list[Field], partial: bool = False) -> Json:
    """The request body these fields validate, as an OpenAPI object schema."""
    schema: Json = {"type": "object",
                    "properties": {field.name: field.schema for field in fields}}
    required = [field.name for field in fields if field.required and not partial]
    if required:
        schema["required"] = required
    return schema


def expect_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        kind = "list" if isinstance(body, list) else type(body).__name__
        raise validation_error(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]})
    return body


def validate(body: Any, fields: list[Field], partial: bool = False) -> dict[str, Any]:
    """Clean values of the fields present; 400 with every field's messages otherwise."""
    values, errors = clean(expect_object(body), fields, partial)
    if errors:
        raise validation_error(errors)
    return values


def clean(data: dict[str, Any], fields: list[Field],
          partial: bool = False) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The clean values of the fields present, and each bad or missing field's messages."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for field in fields:
        if field.name not in data:
            if field.required and not partial:
                errors[field.name] = ["This field is required."]
            continue
        try:
            values[field.name] = _clean(field, data[field.name])
        except FieldError as error:
            errors[field.name] = error.messages
    return values, errors


def _clean(field: Field, raw: Any) -> Any:
    if raw is None:
        if not field.allow_null:
            raise FieldError("This field may not be null.")
        return None
    value = field.parse(raw)
    if field.check is not None:
        field.check(value)
    return value
