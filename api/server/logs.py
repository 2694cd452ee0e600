"""Logging set-up: JSON lines (one object per record) or plain text, on stdout/stderr.

LEDGER_LOG_FORMAT=json|text chooses; the default is JSON when stdout is not a terminal (a
container, a service manager) and text when a person is watching. Request lines (logger
`credit_ledger.requests`) go to LEDGER_ACCESS_LOG (`-` = stdout, the default, or a file);
everything else goes to stderr with its level. Records logged while a request is served
carry its request id.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_LOGGER = "credit_ledger.requests"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# attributes every LogRecord has; anything else was passed with `extra=` and is logged
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(extra_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value …` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        return super().format(record) + (f" {extras}" if extras else "")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


def log_format() -> str:
    chosen = os.environ.get("LEDGER_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    return "text" if sys.stdout.isatty() else "json"


def make_formatter() -> logging.Formatter:
    """The chosen format (also gunicorn's, through its logconfig_dict)."""
    return JsonFormatter() if log_format() == "json" else TextFormatter()


def configure_logging() -> None:
    """Root logger to stderr, request lines to LEDGER_ACCESS_LOG; both in one format."""
    formatter = make_formatter()
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(formatter)
    errors.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [errors]
    root.setLevel(os.environ.get("LEDGER_LOG_LEVEL", "INFO").upper())
    destination = os.environ.get("LEDGER_ACCESS_LOG", "-")
    access: logging.Handler = (logging.StreamHandler(sys.stdout) if destination == "-"
                               else logging.FileHandler(destination))
    access.setFormatter(formatter)
    requests = logging.getLogger(REQUEST_LOGGER)
    requests.handlers[:] = [access]
    requests.propagate = False
    requests.setLevel(logging.INFO)
