"""Input fields that parse and fail exactly like Django REST framework's.

Each parser takes the raw JSON value and returns the clean value or raises
FieldError with DRF's message, so error bodies match upstream word for word.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, DecimalException
from typing import Any
from uuid import UUID

from ledger.periods import Period

Parser = Callable[[Any], Any]
Json = dict[str, Any]
MAX_STRING_LENGTH = 1000
TRUE_VALUES = {"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
               "on", "On", "ON", "1", 1}
FALSE_VALUES = {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE",
                "off", "Off", "OFF", "0", 0}
_DATE = re.compile(r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$")
# Python's int() and Decimal() also take other scripts' digits, "_" separators and spaces.
INTEGER = r"^[0-9]{1,18}$"
SIGNED_INTEGER = r"^-?[0-9]{1,18}$"
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# The end of a schema pattern: "$" alone also matches before a final newline in Python's
# re (and hypothesis, so schemathesis, appends one); ECMA reads both the same way.
END = r"(?!\n)$"
_HEX = "[0-9a-fA-F]"
_UUID_PATH = rf"({_HEX}{{32}}|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})"
# What str.strip() removes (every str.isspace() character), for the non-blank pattern.
_SPACE = (r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f"
          r"\u205f\u3000")


@dataclass(frozen=True)
class Typed:
    """A parser with the OpenAPI schema of what it accepts: one declaration serves both the
    validator and /api/schema/, so the two cannot drift."""

    parse: Parser
    schema: Json

    def __call__(self, raw: Any) -> Any:
        return self.parse(raw)


def plain_integer(raw: str, signed: bool = False) -> int:
    """An integer in ASCII digits (a leading "-" when ``signed``), nothing else; ValueError
    otherwise."""
    if re.fullmatch(SIGNED_INTEGER if signed else INTEGER, raw) is None:
        raise ValueError(raw)
    return int(raw)


def schema_of(parser: Parser) -> Json:
    """The schema a parser declares; {} (anything) for a plain function."""
    return parser.schema if isinstance(parser, Typed) else {}


class FieldError(Exception):
    """One field's validation messages."""

    def __init__(self, *messages: str) -> None:
        super().__init__(messages)
        self.messages = list(messages)


def decimal(max_digits: int, decimal_places: int, min_value: Decimal | None = None,
            zero_message: str = "") -> Typed:
    """DRF DecimalField: digit limits, then the minimum, then quantized; with
    ``zero_message``, zero is refused with it (and the schema leaves zero out)."""

    def parse(raw: Any) -> Decimal:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
            raise FieldError("A valid number is required.")
        if isinstance(raw, str):
            if len(raw) > MAX_STRING_LENGTH:
                raise FieldError("String value too large.")
            if _DECIMAL.fullmatch(raw) is None:  # Decimal() also takes " 5", "+5", "5_000"
                raise FieldError("A valid number is required.")
        try:
            value = Decimal(raw if isinstance(raw, str) else str(raw))
        except DecimalException:
            raise FieldError("A valid number is required.") from None
        if not value.is_finite():
            raise FieldError("A valid number is required.")
        if (not isinstance(raw, str) and _exponent(value) < 0
                and value == value.to_integral_value()):
            value = value.quantize(Decimal(1))  # JSON 5.0 is the integer 5 (JSON Schema)
        _check_precision(value, max_digits, decimal_places)
        if min_value is not None and value < min_value:
            raise FieldError(f"Ensure this value is greater than or equal to {min_value}.")
        if zero_message and value == 0:
            raise FieldError(zero_message)
        return value.quantize(Decimal(1).scaleb(-decimal_places))

    whole = max_digits - decimal_places
    sign = "" if min_value is not None and min_value >= 0 else "-?"
    places = rf"(\.[0-9]{{1,{decimal_places}}})?" if decimal_places else ""
    digits = rf"0*[0-9]{{1,{whole}}}{places}"
    if zero_message:
        digits = _nonzero_digits(whole, decimal_places)
    text = {"type": "string", "format": "decimal", "pattern": rf"^{sign}{digits}{END}"}
    # DRF also takes a JSON number; integers are documented (floats work, but rounding
    # makes their limits inexpressible).
    number: Json = {"type": "integer", "maximum": 10 ** whole - 1,
                    "minimum": 0 if not sign else -(10 ** whole - 1)}
    if zero_message:
        number["not"] = {"enum": [0]}  # OpenAPI 3.0 has no const
    return Typed(parse, {
        "anyOf": [text, number],
        "description": f"A decimal string: at most {whole} digits before the point and "
                       f"{decimal_places} after" + (", not negative" if not sign else "")
                       + (", not zero." if zero_message else ".")})


def _nonzero_digits(whole: int, places: int) -> str:
    """A pattern for the digits of a decimal that is not zero: a non-zero whole part, or a
    zero one with a non-zero digit among at most ``places`` after the point."""
    fraction = rf"(\.[0-9]{{1,{places}}})?" if places else ""
    nonzero_whole = rf"0*[1-9][0-9]{{0,{whole - 1}}}{fraction}"
    if not places:
        return nonzero_whole
    after = "|".join("0" * zeros + rf"[1-9][0-9]{{0,{places - 1 - zeros}}}"
                     for zeros in range(places))
    return rf"(?:{nonzero_whole}|0+\.(?:{after}))"


def _exponent(value: Decimal) -> int:
    """A finite Decimal's exponent. Values with none below zero are not quantized: the
    digits of 1e300 exceed the context's precision, and the limits refuse it anyway."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return exponent


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


def _date(raw: Any) -> date:
    match = _DATE.fullmatch(raw) if isinstance(raw, str) else None
    try:
        if match:
            return date(*(int(part) for part in match.groups()))
    except ValueError:
        pass
    raise FieldError("Date has wrong format. Use one of these formats instead: YYYY-MM-DD.")


date_field = Typed(_date, {"type": "string", "format": "date"})


def choice(*choices: str) -> Typed:
    def parse(raw: Any) -> str:
        if isinstance(raw, str) and raw in choices:
            return raw
        shown = raw if isinstance(raw, str) else _python_str(raw)
        shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
        raise FieldError(f'"{shown}" is not a valid choice.')

    return Typed(parse, {"type": "string", "enum": list(choices)})


def _python_str(raw: Any) -> str:
    """str() as Python (and so DRF) would show the input."""
    return {True: "True", False: "False"}.get(raw, str(raw)) if isinstance(raw, bool) else str(
        raw)


def _boolean(raw: Any) -> bool:
    try:
        if raw in TRUE_VALUES:
            return True
        if raw in FALSE_VALUES:
            return False
    except TypeError:
        pass
    raise FieldError("Must be a valid boolean.")


boolean = Typed(_boolean, {"type": "boolean"})


def prohibited_characters(text: str) -> list[str]:
    """DRF CharField's validators: no NUL (PostgreSQL cannot store it), no lone surrogates."""
    messages = []
    if "\x00" in text:
        messages.append("Null characters are not allowed.")
    surrogate = next((char for char in text if "\ud800" <= char <= "\udfff"), None)
    if surrogate is not None:
        messages.append(f"Surrogate characters are not allowed: U+{ord(surrogate):X}.")
    return messages


def string(max_length: int) -> Typed:
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

    text = {"type": "string", "maxLength": max_length,
            "pattern": rf"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"}
    # DRF's CharField also takes a JSON integer, as its text (fractions decode as Decimal,
    # which it refuses).
    return Typed(parse, {"anyOf": [text, {"type": "integer"}],
                         "description": "Text, not blank, without NUL characters."})


# RFC 3986 pchar without percent-escapes: an id of this grammar is its own URL path
# segment (ASCII letters and digits, - . _ ~ ! $ & ' ( ) * + , ; = : @), never "." or "..".
_SEGMENT = r"^(?!\.\.?$)[A-Za-z0-9\-._~!$&'()*+,;=:@]{1,%d}" + END


def path_segment(max_length: int) -> Typed:
    """A caller's key that must be usable in a URL path as it is (GET/DELETE .../{id}/):
    a "/" or ".." in it could be stored but never addressed."""
    pattern = _SEGMENT % max_length
    segment = re.compile(pattern)

    def parse(raw: Any) -> str:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            raise FieldError("Not a valid string.")
        if not raw:
            raise FieldError("This field may not be blank.")
        if len(raw) > max_length:
            raise FieldError(f"Ensure this field has no more than {max_length} characters.")
        if segment.fullmatch(raw) is None:
            raise FieldError("Use only ASCII letters, digits and - . _ ~ ! $ & ' ( ) * + , ; "
                             "= : @ (not . or .. alone): the id is part of the item's URL.")
        return raw

    number = {"type": "integer", "minimum": -(10 ** (max_length - 1) - 1),
              "maximum": 10 ** max_length - 1}  # DRF takes a number as its text
    return Typed(parse, {"anyOf": [{"type": "string", "pattern": pattern}, number],
                         "description": "Fits a URL path segment as it is: ASCII letters, "
                                        "digits and - . _ ~ ! $ & ' ( ) * + , ; = : @, at "
                                        f"most {max_length}, not . or .."})


def text(max_length: int, blank_message: str = "") -> Typed:
    """A free-text field (a comment): "" when only whitespace, which is refused with
    ``blank_message`` when one is given."""
    def parse(raw: Any) -> str:
        if not isinstance(raw, str):
            raise FieldError("Not a valid string.")
        found = raw.strip()
        messages = prohibited_characters(found)
        if len(found) > max_length:
            messages.insert(0, f"Ensure this field has no more than {max_length} characters.")
        if messages:
            raise FieldError(*messages)
        if not found and blank_message:
            raise FieldError(blank_message)
        return found

    blank = not blank_message
    pattern = r"^[^\x00]*$" if blank else rf"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"
    return Typed(parse, {"type": "string", "maxLength": max_length, "pattern": pattern,
                         "description": "Free text" + (", may be blank." if blank else ".")})


COMMENT = text(MAX_STRING_LENGTH)


def hyperlink(*route_prefixes: str) -> Typed:
    """DRF HyperlinkedRelatedField: an absolute URL (any host, query ignored) or a path, of
    one of the routes. One regular expression is both the parser and the schema."""
    route = "(?:" + "|".join(re.escape(prefix) for prefix in route_prefixes) + ")"
    pattern = (rf"^(?:https?://[^/?#]*{route}{_UUID_PATH}/(?:[?#][\s\S]*)?"
               rf"|{route}{_UUID_PATH}/){END}")
    link = re.compile(pattern)

    def parse(raw: Any) -> UUID:
        if not isinstance(raw, str):
            raise FieldError(f"Incorrect type. Expected URL string, received {_type_name(raw)}.")
        match = link.fullmatch(raw)
        if match is None:
            raise FieldError("Invalid hyperlink - No URL match.")
        return UUID(match.group(1) or match.group(2))

    return Typed(parse, {"type": "string", "pattern": pattern,
                         "description": "A hyperlink (absolute or a path) to one of: "
                                        + ", ".join(route_prefixes)})


def _type_name(raw: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", list: "list", dict: "dict"}
    return names.get(type(raw), type(raw).__name__)


def uuid_filter(raw: str) -> UUID:
    """Hex digits, 32 or dashed 8-4-4-4-12 (UUID() also takes braces, "urn:uuid:" and
    other scripts' digits)."""
    if re.fullmatch(_UUID_PATH, raw) is None:
        raise FieldError("Enter a valid UUID.")
    return UUID(raw)


def _period(raw: Any) -> Period:
    try:
        return Period.parse(raw) if isinstance(raw, str) else Period.parse("")
    except ValueError:
        raise FieldError("Enter a billing period as YYYY-MM.") from None


PERIOD = Typed(_period, {"type": "string",
                         "pattern": r"^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])" + END,
                         "description": "A month, YYYY-MM."})


def started_by(today_period: Period) -> Callable[[Period], None]:
    """A period check that needs the clock: months that have not started are refused."""
    def check(period: Period) -> None:
        if period > today_period:
            raise FieldError(f"Billing period {period} has not started yet.")

    return check


def period_field(today_period: Period) -> Parser:
    """A period that has started (path parameters, the CLI): format, then the clock."""
    check = started_by(today_period)

    def parse(raw: Any) -> Period:
        period: Period = PERIOD(raw)
        check(period)
        return period

    return parse
