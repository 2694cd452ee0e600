"""Where a webhook may be sent: http(s) URLs on public addresses only, unless
LEDGER_WEBHOOK_ALLOW_PRIVATE_TARGETS=1 (a subscription must not reach the ledger's own
network: loopback, private, link-local, reserved and multicast addresses are refused)."""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit


class TargetRefused(Exception):
    """The URL is not one the ledger sends to."""


def private_targets_allowed() -> bool:
    return os.environ.get("LEDGER_WEBHOOK_ALLOW_PRIVATE_TARGETS", "") in ("1", "true", "yes")


def check_url(url: str, resolve: bool = True) -> None:
    """Raise TargetRefused unless `url` is an http(s) URL on an allowed host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("Enter an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise TargetRefused("Credentials in the URL are not allowed.")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise TargetRefused("The URL's port is not valid.") from None
    if private_targets_allowed() or not resolve:
        return
    for address in addresses(parts.hostname):
        if not address.is_global or address.is_multicast:
            raise TargetRefused(f"{parts.hostname} resolves to {address}, a loopback, "
                                "private or reserved address: not allowed.")


def addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(f"{host} does not resolve.") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
