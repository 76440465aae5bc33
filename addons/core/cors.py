"""HTTP conventions clients expect of an OpenAI- or Anthropic-compatible base URL (pure; no mitmproxy import):
request ids on every answer, and CORS for the browser origins listed in `cors-origins`.

CORS is off by default on purpose: the base URL spends a subscription, and a browser lets any web page
call `http://127.0.0.1:8317` unless the answer names the page's origin. Only listed origins are named
(no `*`): an OPTIONS preflight from another origin gets a 204 without CORS headers, so the browser
refuses the call, which is the point.
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
        if not _ORIGIN.fullmatch(item.rstrip("/")):
            raise ConfigError(f"{key}[{i}]: expected an origin (scheme://host[:port], no path), got {item!r}")
        out.append(item.rstrip("/").lower())
    return tuple(out)


def allowed(origin: str | None, listed: tuple[str, ...]) -> TypeGuard[str]:
    return origin is not None and origin.rstrip("/").lower() in listed


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
