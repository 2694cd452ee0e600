"""Every command, added to the `cli` group of api/cli/base.py by importing its module."""

from __future__ import annotations

from api.cli import exports, importer, notify, periods, service, users
from api.cli.base import cli
from api.cli.periods import customer_credit_ids

__all__ = ["cli", "customer_credit_ids", "exports", "importer", "notify", "periods",
           "service", "users"]
