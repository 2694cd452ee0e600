"""Reads that check the log's end in their own statement: one round trip, not two.

Every read with a token first asks the log's end, to catch the read models up with
events another process wrote (or a killed writer left unprojected) and to know whether
the caller's cached principal is still true (users and roles change only through
events). A retrieve by uuid need not ask before it reads: the caller whose principal this
thread loaded at the log end it last caught up to is let through *unconfirmed*, and the
retrieve's own statement reads the log's end beside the row, in the same snapshot. If
the log still ends there, the row and the principal were both true when it was read;
if not, the request is checked as any other (caught up, the token looked up again: a
deactivated user gets 401) and read again (issue 18: the log-end round trip was a
fifth of a retrieve's time). Only while the log is quiet (`Projector.log_quiet`): with
writers moving it, reading twice would cost a round trip more than checking first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Unconfirmed:
    """A request let through before the log's end was asked: `log_end` is what its
    answer must be read at, `check` does what was skipped (and may raise 401)."""

    log_end: int
    check: Callable[[], None]


class LogEndMoved(Exception):
    """The log moved past the unconfirmed log end: the request is now checked, read again."""


def confirm(context: Any, observed: int | None) -> None:
    """Accept an answer read where the log ended at `observed` (None: nothing was read to
    say), or check the request now and raise LogEndMoved for it to be read again."""
    pending: Unconfirmed | None = getattr(context, "unconfirmed", None)
    if pending is None:
        return
    context.unconfirmed = None
    if observed != pending.log_end:
        pending.check()
        raise LogEndMoved


def check_now(context: Any) -> None:
    """For reads that do not confirm: do the skipped check before anything is read."""
    pending: Unconfirmed | None = getattr(context, "unconfirmed", None)
    if pending is not None:
        context.unconfirmed = None
        pending.check()


def read_confirmed(context: Any, read: Callable[[], T]) -> T:
    """`read`, and once more if the log had moved under it (then as a checked request).
    An error that came before anything confirmed (a malformed uuid's 404) is answered
    only to a checked caller: a token deactivated elsewhere gets its 401 instead."""
    try:
        return read()
    except LogEndMoved:
        return read()
    except Exception:
        check_now(context)
        raise
