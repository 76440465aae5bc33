"""Who may use the proxy (pure): loopback peers always, every other peer only with a configured client key.

Loopback means the TCP peer address is in 127.0.0.0/8, is ::1, or is an IPv4-mapped IPv6 address
`::ffff:127.x.y.z` (what a dual-stack socket reports for an IPv4 loopback client). Nothing else is:
not the machine's own LAN addresses, not `X-Forwarded-For`, not the Host header. mitmproxy reports
the real peer even when it listens on 0.0.0.0, so a local client stays trusted there too.

A peer that is not loopback must present a key from `api-keys` on every flow. Where it goes depends
on the listener:

- regular proxy (HTTPS_PROXY): `Proxy-Authorization`, as HTTP proxies do. `Basic base64(user:KEY)`
  (the key as password), `Basic base64(KEY:)` (the key as user name) or `Bearer KEY`. It is checked on
  CONNECT (then the whole tunnel is authorised) and on each absolute-form plain-HTTP request;
- base-URL listener: the API headers, `Authorization: Bearer KEY`, `x-api-key` or `x-goog-api-key`.

A loopback peer on the base-URL listener that sends no valid key must also name the proxy by an IP
address or `localhost` in its Host header: a web page that re-points its own DNS name at 127.0.0.1
(DNS rebinding) reaches the listener as a loopback peer, but its requests carry its own name.
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
from collections.abc import Mapping


def is_loopback(peer: str | None) -> bool:
    """Whether `peer` (an IP address string, IPv6 zone allowed) is a loopback address as defined above."""
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


def proxy_keys(value: str) -> list[str]:
    """Client keys in a `Proxy-Authorization` value. Tools put the key in the proxy URL's password
    (`http://user:KEY@host`), its user name (`http://KEY@host`) or send it as a bearer token."""
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return []
    if scheme.lower() == "bearer":
        return [credentials]
    if scheme.lower() != "basic":
        return []
    try:
        decoded = binascii.a2b_base64(credentials.encode("ascii"), strict_mode=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return []
    user, sep, password = decoded.partition(":")
    if not sep:
        return []
    return [password] if password else [user] if user else []


def key_valid(presented: list[str], configured: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (header bytes that are not UTF-8 arrive
    as surrogate escapes and compare as those bytes)."""
    ok = False
    for candidate in presented:
        for key in configured:
            ok |= hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), key.encode("utf-8", "surrogateescape"))
    return ok


def local_host(host_header: str) -> bool:
    """Whether a Host header names this machine without a DNS name: an IP literal or `localhost`."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8317
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_refusal(host_header: str, presented: list[str], configured: tuple[str, ...]) -> str | None:
    """For a loopback peer on the base-URL listener: the reason to refuse a DNS-named Host without a key, else None."""
    if local_host(host_header) or key_valid(presented, configured):
        return None
    return (
        f"without a client key cliproxy answers only requests addressed to 127.0.0.1, [::1] or localhost "
        f"(this one named {host_header[:100]!r}: a guard against DNS rebinding); use http://127.0.0.1:PORT "
        "or send a client key as Authorization: Bearer"
    )


def refusal(peer: str | None, presented: list[str], configured: tuple[str, ...], *, proxy: bool) -> str | None:
    """None when the peer may go on, else the reason to give it. `proxy`: the regular proxy, whose
    clients send the key as `Proxy-Authorization`; otherwise the base-URL listener's API headers."""
    if is_loopback(peer):
        return None
    if not configured:
        return (
            "cliproxy serves clients on other machines only with client keys: add keys under api-keys "
            "in the cliproxy config and send one with each request"
        )
    if key_valid(presented, configured):
        return None
    if proxy:
        return (
            "proxy authentication required: send a client key from api-keys as Proxy-Authorization, "
            "e.g. HTTPS_PROXY=http://cliproxy:KEY@HOST:PORT"
        )
    return "a valid client key is required (send it as Authorization: Bearer, x-api-key or x-goog-api-key)"
