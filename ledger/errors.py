"""Domain errors. They carry no HTTP knowledge; api/http/errors.py maps them.

LedgerError
├── NotFound                 an aggregate does not exist (or is deleted)
├── RuleViolation            a business rule refused the command
│   ├── DuplicateCredit      a project or customer already has a credit
│   ├── NoCustomerCredit     a project credit needs an organisation credit
│   ├── AllocationExceeded   allocations would exceed the organisation credit
│   ├── ProjectTerminated    the project takes no new credit or consumption
│   └── InvalidTerms         credit terms are inconsistent
├── Conflict                 the state forbids it now (closed period, concurrent change)
│   ├── PeriodClosed
│   ├── PreconditionFailed   the caller's If-Match version is no longer current
│   ├── ItemIdTaken          a consumption id re-posted with other content
│   └── ItemIdReversed       a consumption id re-posted after it was reversed
└── KeyReused                an Idempotency-Key re-sent with another request
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class LedgerError(Exception):
    """Base of every domain error."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(LedgerError):
    """The aggregate does not exist."""


class RuleViolation(LedgerError):
    """A business rule refused the command."""


class DuplicateCredit(RuleViolation):
    """One credit per project and per customer."""


class NoCustomerCredit(RuleViolation):
    """A project credit is an earmark of an organisation credit that must exist."""


class AllocationExceeded(RuleViolation):
    """The sum of project credits may not exceed the organisation credit."""


class ProjectTerminated(RuleViolation):
    """A terminated project takes no new credit and no new consumption."""


class InvalidTerms(RuleViolation):
    """Credit terms that contradict each other."""


class Conflict(LedgerError):
    """The current state forbids the command."""


class PeriodClosed(Conflict):
    """Consumption for a closed billing period is refused."""


class PreconditionFailed(Conflict):
    """A conditional write named a version that is no longer the current one."""


class ItemIdTaken(Conflict):
    """A consumption item id means one thing forever: other content under it is refused."""

    def __init__(self, message: str, item: Any) -> None:
        super().__init__(message, "id")
        self.item = item


class ItemIdReversed(Conflict):
    """A reversed item's id cannot be posted again (it would look like a replay)."""

    def __init__(self, message: str, reversed_at: datetime, reversed_by: str) -> None:
        super().__init__(message, "id")
        self.reversed_at = reversed_at
        self.reversed_by = reversed_by


class KeyReused(LedgerError):
    """A command key (Idempotency-Key) already executed another request."""


def check_version(aggregate_version: int, expected: int | None) -> None:
    """Optimistic concurrency for callers: act only on the version they have seen."""
    if expected is not None and aggregate_version != expected:
        raise PreconditionFailed(
            f"The credit is at version {aggregate_version}, not {expected}; reload and retry.")
