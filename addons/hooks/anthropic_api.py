"""Addon: Anthropic `/v1/messages` requests, translated to Codex bodies; `count_tokens` answered locally.

The translated body replaces the request body; `CodexUpstream` then picks the account and points
the flow at the backend. Errors come out in Anthropic's shape (the router marks these flows so).
"""

from __future__ import annotations

import json

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import guarded, read_json, reply_json, set_codex_body, state
from cliproxy.addons.translate import anthropic
from mitmproxy import http


class AnthropicApi:
    name = "cliproxy_anthropic"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @guarded
    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or flow.response or st["route"] not in ("messages", "count_tokens"):
            return
        body = read_json(flow)
        settings = self.runtime.config.settings
        if st["route"] == "count_tokens":
            reply_json(flow, 200, json.dumps({"input_tokens": anthropic.count_tokens(body, settings)}).encode())
            return
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            st["client_model"] = body["model"]
        call = anthropic.request_to_codex(body, settings, session=flow.request.headers.get("x-claude-code-session-id"))
        set_codex_body(flow, st, call)
