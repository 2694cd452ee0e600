"""Credit terms: the settings that drive minimal consumption and expiry."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date
from decimal import Decimal
from typing import Any

from ledger.errors import InvalidTerms
from ledger.money import ZERO

LOGICS = ("fixed", "linear")


@dataclass(frozen=True)
class Terms:
    """The terms shared by organisation and project credits (upstream's BaseCredit)."""

    end_date: date | None = None
    expected_consumption: Decimal = ZERO
    minimal_consumption_logic: str = "fixed"
    grace_coefficient: Decimal = Decimal(0)
    apply_as_minimal_consumption: bool = True

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(self) -> None:
        """The model-level rule upstream checks on every save (reference §2.5)."""
        if self.end_date is not None and self.end_date.day != 1:
            raise InvalidTerms("End date must be the first day of the month.", "end_date")

    def updated(self, **changes: Any) -> Terms:
        return replace(self, **{k: v for k, v in changes.items() if k in TERM_NAMES})


TERM_NAMES = tuple(f.name for f in fields(Terms))
