"""Addon: OpenAI `/v1/chat/completions` and `/v1/responses` requests, translated to Codex bodies.

The translated body replaces the request body; `CodexUpstream` then picks the account and points
the flow at the backend.
"""

from __future__ import annotations

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import guarded, read_json, set_codex_body, state
from cliproxy.addons.translate import chat, responses
from mitmproxy import http


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
        translate = chat.request_to_codex if st["route"] == "chat" else responses.request_to_codex
        set_codex_body(flow, st, translate(body, settings))
