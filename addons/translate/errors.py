"""Errors in each client's own format, and upstream (Codex backend) errors read into one shape."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

ClientFormat = Literal["openai", "anthropic"]

_OPENAI_BY_STATUS = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "insufficient_quota"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
_ANTHROPIC_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_TYPES = set(_ANTHROPIC_BY_STATUS.values()) | {"api_error"}

_UNSUPPORTED = re.compile(r"Unsupported parameter: '?([A-Za-z0-9_.\[\]]+)'?")

# In-stream failure codes/types → HTTP status (as CLIProxyAPI maps them, so clients retry alike).
_STATUS_BY_KIND = {
    "cyber_policy": 400,
    "invalid_request_error": 400,
    "bad_request_error": 400,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "unauthorized": 401,
    "token_invalidated": 401,
    "permission_error": 403,
    "forbidden": 403,
    "permission_denied": 403,
    "not_found": 404,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "usage_limit_reached": 429,
    "insufficient_quota": 429,
    "usage_not_included": 403,
    "server_is_overloaded": 503,
    "service_unavailable_error": 503,
}


@dataclass(slots=True)
class ProxyError(Exception):
    """An error to hand the client, in whatever format it speaks."""

    status: int
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After
    extra: dict[str, Any] = field(default_factory=dict)  # more fields for the OpenAI error object

    def __str__(self) -> str:
        return self.message


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", code, param)


def openai_body(err: ProxyError) -> dict[str, Any]:
    default_type, default_code = _OPENAI_BY_STATUS.get(
        err.status, ("server_error", "internal_server_error") if err.status >= 500 else ("invalid_request_error", None)
    )
    body: dict[str, Any] = {
        "message": err.message,
        "type": err.type if err.type and err.type not in _ANTHROPIC_ONLY else default_type,
        "param": err.param,
        "code": err.code or default_code,
    }
    body.update(err.extra)
    return {"error": body}


_ANTHROPIC_ONLY = {"not_found_error", "api_error", "overloaded_error", "timeout_error", "billing_error"}


def anthropic_type(err: ProxyError) -> str:
    """Anthropic's error type: its own type for the status when it has a specific one."""
    if err.status in _ANTHROPIC_BY_STATUS and err.status != 400:
        return _ANTHROPIC_BY_STATUS[err.status]
    if err.type in _ANTHROPIC_TYPES:
        return err.type
    if err.status in _ANTHROPIC_BY_STATUS:
        return _ANTHROPIC_BY_STATUS[err.status]
    return "api_error" if err.status >= 500 else "invalid_request_error"


def anthropic_body(err: ProxyError) -> dict[str, Any]:
    """Anthropic's error object, with the types and wording Claude Code acts on."""
    kind, message = anthropic_type(err), err.message
    reason = err.code or err.type or ""
    if err.status == 408 or reason == "stream_disconnected":
        kind = "api_error"  # a cut stream: retryable, not the client's timeout
    elif reason in ("server_is_overloaded", "service_unavailable_error") or err.status == 503:
        kind = "overloaded_error"
    elif reason == "context_length_exceeded" and not message.startswith("prompt is too long"):
        message = f"prompt is too long: {message}"  # the wording Claude Code compacts the conversation on
    return {"type": "error", "error": {"type": kind, "message": message}}


def render(err: ProxyError, fmt: ClientFormat) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a JSON error response for the client."""
    body = anthropic_body(err) if fmt == "anthropic" else openai_body(err)
    headers = {"content-type": "application/json"}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(0, err.retry_after))
    return err.status, headers, json.dumps(body, ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------
# Reading upstream errors


def _as_dict(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _retry_after(info: dict[str, Any], headers: dict[str, str] | None, now: float) -> int | None:
    resets_at = info.get("resets_at")
    if isinstance(resets_at, (int, float)) and resets_at > now:
        return math.ceil(resets_at - now)
    resets_in = info.get("resets_in_seconds")
    if isinstance(resets_in, (int, float)) and resets_in >= 0:
        return math.ceil(resets_in)
    if headers:
        value = headers.get("retry-after", "")
        if value.strip().isdigit():
            return int(value.strip())
    return None


def from_upstream_response(status: int, body: bytes, headers: dict[str, str] | None = None, now: float | None = None) -> ProxyError:
    """Read a non-200 answer of the Codex backend (JSON `error`, `{"detail": …}`, HTML, text)."""
    now = time.time() if now is None else now
    data = _as_dict(body)
    info: dict[str, Any] = {}
    if data is not None:
        if isinstance(data.get("error"), dict):
            info = data["error"]
        elif isinstance(data.get("detail"), str):
            info = {"message": data["detail"]}
        elif isinstance(data.get("detail"), dict):
            info = data["detail"]
        elif isinstance(data.get("error"), str):
            info = {"message": data.get("error_description") or data["error"], "code": data["error"]}
        else:
            info = data
    message = info.get("message") if isinstance(info.get("message"), str) else None
    if not message:
        text = body.decode("utf-8", "replace").strip()
        if text.lower().startswith(("<!doctype", "<html")):
            message = f"upstream answered HTTP {status} with an HTML page (blocked or challenged by the network edge)"
        else:
            message = text[:500] or f"upstream answered HTTP {status}"
    kind = info.get("type") if isinstance(info.get("type"), str) else None
    code = info.get("code") if isinstance(info.get("code"), str) else None
    param = info.get("param") if isinstance(info.get("param"), str) else None
    if param is None and (unsupported := _UNSUPPORTED.match(message)):
        param, code = unsupported[1], code or "unsupported_parameter"  # the backend's `{"detail": "Unsupported parameter: x"}`
    if kind == "usage_limit_reached" or code == "usage_limit_reached":
        status = 429
    err = ProxyError(status, message, kind, code or kind, param)
    if status == 429:
        err.retry_after = _retry_after(info, headers, now)
    return err


def from_stream_failure(payload: dict[str, Any], now: float | None = None) -> ProxyError:
    """Read a `response.failed` or `error` event into an error with the status it stands for."""
    now = time.time() if now is None else now
    info: dict[str, Any] = {}
    if isinstance(payload.get("response"), dict) and isinstance(payload["response"].get("error"), dict):
        info = payload["response"]["error"]
    elif isinstance(payload.get("error"), dict):
        info = payload["error"]
    else:
        info = payload
    message = m if isinstance(m := info.get("message"), str) else "upstream stream failed"
    kind = info.get("type") if isinstance(info.get("type"), str) and info.get("type") != "error" else None
    code = info.get("code") if isinstance(info.get("code"), str) else None
    param = info.get("param") if isinstance(info.get("param"), str) else None
    status = 0
    for key in ("status_code", "status"):
        if isinstance(info.get(key), int) and 400 <= info[key] < 600:
            status = info[key]
    if not status:
        status = _STATUS_BY_KIND.get(code or "", 0) or _STATUS_BY_KIND.get(kind or "", 0) or 502
    if "at capacity" in message.lower():
        status = 429
    err = ProxyError(status, message, kind, code, param)
    if status == 429:
        err.retry_after = _retry_after(info, None, now)
    return err


def request_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"the request body is larger than {limit} bytes; send less (or raise max-request-bytes in the cliproxy config)",
        "invalid_request_error",
        "request_too_large",
    )
