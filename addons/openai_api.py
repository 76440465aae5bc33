"""Addon: OpenAI `/v1/chat/completions` and `/v1/responses` requests, translated to Codex bodies.

The translated body replaces the request body; `CodexUpstream` then picks the account and points
the flow at the backend.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http

from .flowstate import guarded, state
from .runtime import Runtime
from .translate import chat, errors, responses


def read_json(flow: http.HTTPFlow) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = flow.request.get_content(strict=False) or b""
    if not raw.strip():
        raise errors.bad_request("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise errors.bad_request("the request body is not UTF-8 text") from None
    except ValueError as exc:
        raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None


def set_codex_body(flow: http.HTTPFlow, st: dict[str, Any], body: dict[str, Any], *, stream: bool, model: str, effort: str, options: dict[str, Any]) -> None:
    """Hand a translated request over to CodexUpstream (shared by every client format)."""
    flow.request.headers.pop("content-encoding", None)
    flow.request.content = json.dumps(body, ensure_ascii=False).encode()
    st.update(ready=True, stream=stream, model=model, effort=effort, options=options,
              client_model=st.get("client_model"), cache_key=body.get("prompt_cache_key"))


class OpenAIApi:
    name = "cliproxy_openai"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @guarded
    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or flow.response or st["route"] not in ("chat", "responses"):
            return
        body = read_json(flow)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            st["client_model"] = body["model"]
        settings = self.runtime.config.settings
        if st["route"] == "chat":
            call = chat.request_to_codex(body, settings)
            set_codex_body(flow, st, call.body, stream=call.stream, model=call.model, effort=call.effort, options=call.options())
        else:
            rcall = responses.request_to_codex(body, settings)
            set_codex_body(flow, st, rcall.body, stream=rcall.stream, model=rcall.model, effort=rcall.effort, options={})
