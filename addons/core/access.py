"""Who may use the proxy: loopback peers always, others only with a configured client key (pure)."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping


def is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """Client keys a request carries: `Authorization: Bearer`, `x-api-key` or `x-goog-api-key`."""
    keys = []
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        keys.append(auth[7:].strip())
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name):
            keys.append(headers[name].strip())
    return keys


def key_valid(presented: list[str], configured: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key."""
    ok = False
    for candidate in presented:
        for key in configured:
            ok |= hmac.compare_digest(candidate.encode(), key.encode())
    return ok


def allowed(peer: str | None, headers: Mapping[str, str], configured: tuple[str, ...]) -> bool:
    return is_loopback(peer) or (bool(configured) and key_valid(presented_keys(headers), configured))
