"""CSV that a spreadsheet opens correctly.

UTF-8 with a byte-order mark by default (so `Müller` is not garbled by a default
import). Cells are written by type: Decimals as plain numbers with 5 places (a negative
amount stays a number), booleans as true/false, None as an empty cell, and text that a
spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage return)
behind an apostrophe, which shows it as the text it is (OWASP's CSV-injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from ledger.money import format_money

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Decimal):
        return format_money(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(rows: Iterable[Sequence[Any]], bom: bool = True) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(value) for value in row])
    return (BOM if bom else "") + out.getvalue()


def json_ready(value: Any) -> Any:
    """Decimals as 5-place strings (the same text as in the CSV), recursively."""
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_ready(item) for item in value]
    return value
