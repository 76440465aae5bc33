"""Per-flow cliproxy state and the safety net that turns any failure into a clean client error.

State lives in `flow.metadata["cliproxy"]` as plain values, so flows saved with `-w` stay readable.
A flow with that key is *claimed*: cliproxy answers it or rewrites it, and never lets it leave for
its original host unmodified.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from typing import Any

from mitmproxy import http

from .translate import errors
from .translate.codex_body import CodexCall

logger = logging.getLogger(__name__)

KEY = "cliproxy"


def state(flow: http.HTTPFlow) -> dict[str, Any] | None:
    return flow.metadata.get(KEY)


def claim(flow: http.HTTPFlow, route: str, fmt: str) -> dict[str, Any]:
    st = {"route": route, "format": fmt}
    flow.metadata[KEY] = st
    return st


def reply_json(flow: http.HTTPFlow, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    flow.response = http.Response.make(status, body, {"content-type": "application/json", **(headers or {})})


def reply_error(flow: http.HTTPFlow, err: errors.ProxyError) -> None:
    st = state(flow) or {}
    status, headers, body = errors.render(err, st.get("format", "openai"))
    flow.response = http.Response.make(status, body, headers)
    st["error"] = f"{status} {err.message[:200]}"
    flow.marked = ":warning:"


def read_json(flow: http.HTTPFlow) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = flow.request.get_content(strict=False) or b""
    if not raw.strip():
        raise errors.bad_request("the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise errors.bad_request("the request body is not UTF-8 text") from None
    except ValueError as exc:
        raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise errors.bad_request("the request body is nested too deeply") from None
    if b"\\ud" in raw or b"\\uD" in raw:  # escaped surrogates: fine in pairs, unencodable alone
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise errors.bad_request("the request body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff) in a string") from None
    return body


def set_codex_body(flow: http.HTTPFlow, st: dict[str, Any], call: CodexCall) -> None:
    """Hand a translated request over to CodexUpstream (shared by every client format)."""
    flow.request.headers.pop("content-encoding", None)
    try:
        flow.request.content = json.dumps(call.body, ensure_ascii=False).encode()
    except RecursionError:
        raise errors.bad_request("the request body is nested too deeply") from None
    st.update(ready=True, stream=call.stream, model=call.model, effort=call.effort, options=call.options,
              client_model=st.get("client_model"), cache_key=call.body.get("prompt_cache_key"))


def guarded(hook):
    """Wrap a hook: a ProxyError becomes that error; any other exception a 500, for claimed flows."""

    def handle(flow: http.HTTPFlow, exc: Exception) -> None:
        if isinstance(exc, errors.ProxyError):
            reply_error(flow, exc)
            return
        if isinstance(exc, (RecursionError, UnicodeEncodeError)) and state(flow) is not None:
            # Only client input reaches these: JSON nested past Python's limit, a lone surrogate escape.
            what = "nested too deeply" if isinstance(exc, RecursionError) else "not encodable as UTF-8 (an unpaired surrogate)"
            reply_error(flow, errors.bad_request(f"the request is {what}"))
            return
        logger.exception("cliproxy: %s hook failed", hook.__name__)
        if state(flow) is not None:
            reply_error(flow, errors.ProxyError(500, f"cliproxy internal error ({type(exc).__name__}); see the proxy log", "server_error", "internal_error"))

    if inspect.iscoroutinefunction(hook):
        @functools.wraps(hook)
        async def async_wrapper(self, flow: http.HTTPFlow) -> None:
            try:
                await hook(self, flow)
            except Exception as exc:
                handle(flow, exc)

        return async_wrapper

    @functools.wraps(hook)
    def wrapper(self, flow: http.HTTPFlow) -> None:
        try:
            hook(self, flow)
        except Exception as exc:
            handle(flow, exc)

    return wrapper


class Guard:
    """Last in cliproxy's chain: a claimed flow that is neither answered nor rewritten gets a 500, and an
    answer to HEAD goes out without its body."""

    name = "cliproxy_guard"

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is not None and flow.response is None and not st.get("upstream") and not st.get("passthrough"):
            logger.error("cliproxy: %s request was neither answered nor rewritten; refusing it", st.get("route"))
            reply_error(flow, errors.ProxyError(500, "cliproxy could not handle this request; see the proxy log", "server_error", "internal_error"))

    def response(self, flow: http.HTTPFlow) -> None:
        if state(flow) is not None and flow.request.method == "HEAD" and flow.response.raw_content:
            # An answer to HEAD is headers only (content-length kept): body bytes would be read as the
            # start of the next response on a keep-alive connection.
            flow.response.raw_content = b""
