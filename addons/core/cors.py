"""HTTP conventions clients expect of an OpenAI- or Anthropic-compatible base URL (pure; no mitmproxy import):
request ids on every answer, and CORS for the browser origins listed in `cors-origins`.

CORS is off by default on purpose: the base URL spends a subscription, and a browser lets any web page
call `http://127.0.0.1:8317` unless the answer names the page's origin. Only listed origins are named
(no `*`): an OPTIONS preflight from another origin gets a 204 without CORS headers, so the browser
refuses the call, which is the point.

CORS only stops a page from reading answers: a "simple" request (a `text/plain` POST, a form post, a
WebSocket handshake) runs without a preflight. So a request that a browser marks as coming from a web
page, by an `Origin` or by `Sec-Fetch-Site: cross-site`/`same-site`, is refused unless its origin is
listed (`refusal`). Browsers send `Origin` on every cross-origin POST and WebSocket handshake; SDKs and
CLIs send neither header. `Origin: null` (sandboxed frames, file:// pages, any site can produce it) is
refused and cannot be listed.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeGuard

from cliproxy.addons.core.validate import ConfigError, expect

METHODS = "GET, POST, OPTIONS"
#: asked for by the SDKs' browser modes when a preflight does not list its headers
DEFAULT_HEADERS = "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access"
MAX_AGE = "7200"  # seconds a browser may cache a preflight (Chromium's cap)
EXPOSED = "x-request-id, retry-after"  # answer headers a page's script may read
_ORIGIN = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:\d{1,5})?"
)  # not `null`: every sandboxed page sends it
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


def origins(value: Any, key: str = "cors-origins") -> tuple[str, ...]:
    """The `cors-origins` setting: exact origins (`scheme://host[:port]`, no path, no `*`)."""
    if value is None:
        return ()
    expect(value, list, key, "a list of origins such as http://localhost:3000")
    out = []
    for i, item in enumerate(value):
        expect(item, str, f"{key}[{i}]", "an origin string such as http://localhost:3000")
        if item.strip() == "*":
            raise ConfigError(f"{key}[{i}]: '*' would let every web page spend the subscription; list the origins of your tools")
        if item.strip().lower() == "null":
            raise ConfigError(
                f"{key}[{i}]: 'null' is the origin of every sandboxed frame and file:// page, which any web page can create; "
                "expected an origin such as http://localhost:3000"
            )
        if not _ORIGIN.fullmatch(item.rstrip("/")):
            raise ConfigError(f"{key}[{i}]: expected an origin (scheme://host[:port], no path), got {item!r}")
        out.append(item.rstrip("/").lower())
    return tuple(out)


def allowed(origin: str | None, listed: tuple[str, ...]) -> TypeGuard[str]:
    return origin is not None and origin.rstrip("/").lower() in listed


#: `Sec-Fetch-Site` values of requests a page on another site started (`same-origin` and `none`, a
#: typed URL or a bookmark, are the user's own).
CROSS_SITE = ("cross-site", "same-site")
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(scheme: str, host: str, port: int) -> str:
    """The origin (`scheme://host[:port]`) of a URL, as a browser would write it in `Origin`."""
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    default = DEFAULT_PORTS.get(scheme.lower())
    return f"{scheme.lower()}://{host.lower()}" + ("" if port == default else f":{port}")


def refusal(origin: str | None, fetch_site: str | None, listed: tuple[str, ...], own_origin: str | None = None) -> str | None:
    """Why a request from a web page is refused, or None to serve it.

    `own_origin` is the origin of the host the request is for, on intercepted hosts only: a page of that
    site (chatgpt.com calling chatgpt.com) is the site's own. The base-URL listener passes None, since a
    DNS-rebinding page would have the listener's own origin too.
    """
    if origin is not None:
        if allowed(origin, listed) or (own_origin is not None and origin.rstrip("/").lower() == own_origin):
            return None
        shown = origin[:100].encode("ascii", "backslashreplace").decode()
        return (
            f"requests from web pages are refused: the origin {shown!r} is not listed in cors-origins "
            "(tools that are not browsers send no Origin header)"
        )
    site = (fetch_site or "").strip().lower()
    if site in CROSS_SITE:
        return f"requests started by another web site are refused (Sec-Fetch-Site: {site}); list the page's origin in cors-origins"
    return None


def preflight_headers(origin: str | None, requested_headers: str | None, listed: tuple[str, ...]) -> dict[str, str]:
    """Headers of the 204 answer to an OPTIONS request: CORS ones only for a listed origin."""
    headers = {"allow": METHODS}
    if not allowed(origin, listed):
        return headers
    asked = (requested_headers or "").strip()
    headers.update(
        {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": METHODS,
            "access-control-allow-headers": asked if asked and _HEADER_LIST.fullmatch(asked) and len(asked) < 2000 else DEFAULT_HEADERS,
            "access-control-max-age": MAX_AGE,
            "vary": "origin",
        }
    )
    return headers


def answer_headers(origin: str | None, listed: tuple[str, ...]) -> dict[str, str]:
    """CORS headers of an actual answer to a listed origin (none otherwise)."""
    if not allowed(origin, listed):
        return {}
    return {"access-control-allow-origin": origin, "access-control-expose-headers": EXPOSED, "vary": "origin"}


def request_id() -> str:
    """A fresh request id in OpenAI's shape, for answers the upstream did not give one."""
    return f"req_{uuid.uuid4().hex}"
