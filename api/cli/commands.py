"""Every command, added to the `cli` group of api/cli/base.py by importing its module."""

from __future__ import annotations

from api.cli import exports, importer, notify, periods, service, users
from api.cli.base import cli

__all__ = ["cli", "exports", "importer", "notify", "periods", "service", "users"]
