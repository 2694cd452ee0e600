"""Input fields that parse and fail exactly like Django REST framework's.

Each parser takes the raw JSON value and returns the clean value or raises
FieldError with DRF's message, so error bodies match upstream word for word.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, DecimalException
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

Parser = Callable[[Any], Any]
MAX_STRING_LENGTH = 1000
TRUE_VALUES = {"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
               "on", "On", "ON", "1", 1}
FALSE_VALUES = {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE",
                "off", "Off", "OFF", "0", 0}
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_UUID_PATH = r"([0-9a-fA-F]{32}|[0-9a-fA-F-]{36})"


class FieldError(Exception):
    """One field's validation messages."""

    def __init__(self, *messages: str) -> None:
        super().__init__(messages)
        self.messages = list(messages)


def decimal(max_digits: int, decimal_places: int, min_value: Decimal | None = None) -> Parser:
    """DRF DecimalField: digit limits, then the minimum, then quantized."""

    def parse(raw: Any) -> Decimal:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
            raise FieldError("A valid number is required.")
        text = str(raw).strip()
        if len(text) > MAX_STRING_LENGTH:
            raise FieldError("String value too large.")
        try:
            value = Decimal(text)
        except DecimalException:
            raise FieldError("A valid number is required.") from None
        if not value.is_finite():
            raise FieldError("A valid number is required.")
        _check_precision(value, max_digits, decimal_places)
        if min_value is not None and value < min_value:
            raise FieldError(f"Ensure this value is greater than or equal to {min_value}.")
        return value.quantize(Decimal(1).scaleb(-decimal_places))

    return parse


def _check_precision(value: Decimal, max_digits: int, decimal_places: int) -> None:
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0:
        total, whole, places = len(digits) + exponent, len(digits) + exponent, 0
    elif len(digits) > abs(exponent):
        total, whole, places = len(digits), len(digits) - abs(exponent), abs(exponent)
    else:
        total, whole, places = abs(exponent), 0, abs(exponent)
    if total > max_digits:
        raise FieldError(f"Ensure that there are no more than {max_digits} digits in total.")
    if places > decimal_places:
        raise FieldError(
            f"Ensure that there are no more than {decimal_places} decimal places.")
    if whole > max_digits - decimal_places:
        raise FieldError("Ensure that there are no more than "
                         f"{max_digits - decimal_places} digits before the decimal point.")


MONEY = decimal(16, 5, Decimal(0))
GRACE = decimal(3, 0)


def date_field(raw: Any) -> date:
    match = _DATE.match(raw) if isinstance(raw, str) else None
    try:
        if match:
            return date(*(int(part) for part in match.groups()))
    except ValueError:
        pass
    raise FieldError("Date has wrong format. Use one of these formats instead: YYYY-MM-DD.")


def choice(*choices: str) -> Parser:
    def parse(raw: Any) -> str:
        if isinstance(raw, str) and raw in choices:
            return raw
        shown = raw if isinstance(raw, str) else _python_str(raw)
        shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
        raise FieldError(f'"{shown}" is not a valid choice.')

    return parse


def _python_str(raw: Any) -> str:
    """str() as Python (and so DRF) would show the input."""
    return {True: "True", False: "False"}.get(raw, str(raw)) if isinstance(raw, bool) else str(
        raw)


def boolean(raw: Any) -> bool:
    try:
        if raw in TRUE_VALUES:
            return True
        if raw in FALSE_VALUES:
            return False
    except TypeError:
        pass
    raise FieldError("Must be a valid boolean.")


def prohibited_characters(text: str) -> list[str]:
    """DRF CharField's validators: no NUL (PostgreSQL cannot store it), no lone surrogates."""
    messages = []
    if "\x00" in text:
        messages.append("Null characters are not allowed.")
    surrogate = next((char for char in text if "\ud800" <= char <= "\udfff"), None)
    if surrogate is not None:
        messages.append(f"Surrogate characters are not allowed: U+{ord(surrogate):X}.")
    return messages


def string(max_length: int) -> Parser:
    def parse(raw: Any) -> str:
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise FieldError("Not a valid string.")
        text = str(raw).strip()
        if not text:
            raise FieldError("This field may not be blank.")
        messages = []
        if len(text) > max_length:
            messages.append(f"Ensure this field has no more than {max_length} characters.")
        messages.extend(prohibited_characters(text))
        if messages:
            raise FieldError(*messages)
        return text

    return parse


def text(max_length: int) -> Parser:
    """A free-text field that may be blank (a comment): "" when only whitespace."""
    def parse(raw: Any) -> str:
        if not isinstance(raw, str):
            raise FieldError("Not a valid string.")
        found = raw.strip()
        messages = prohibited_characters(found)
        if len(found) > max_length:
            messages.insert(0, f"Ensure this field has no more than {max_length} characters.")
        if messages:
            raise FieldError(*messages)
        return found

    return parse


COMMENT = text(MAX_STRING_LENGTH)


def hyperlink(*route_prefixes: str) -> Parser:
    """DRF HyperlinkedRelatedField: an absolute or relative URL of one of the routes."""
    patterns = [re.compile(rf"^{re.escape(prefix)}{_UUID_PATH}/$") for prefix in route_prefixes]

    def parse(raw: Any) -> UUID:
        if not isinstance(raw, str):
            raise FieldError(f"Incorrect type. Expected URL string, received {_type_name(raw)}.")
        path = urlsplit(raw).path if raw.startswith(("http:", "https:")) else raw
        for pattern in patterns:
            match = pattern.match(path)
            if match:
                return UUID(match.group(1))
        raise FieldError("Invalid hyperlink - No URL match.")

    return parse


def _type_name(raw: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", list: "list", dict: "dict"}
    return names.get(type(raw), type(raw).__name__)


def uuid_filter(raw: str) -> UUID:
    try:
        return UUID(raw.strip())
    except ValueError:
        raise FieldError("Enter a valid UUID.") from None
