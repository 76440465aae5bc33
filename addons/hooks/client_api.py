"""Addon: client API requests (OpenAI Chat Completions, Responses and its compaction, Anthropic Messages) translated
into Codex bodies, by the table in `translate.registry`; Anthropic `count_tokens` answered locally.

The translated body replaces the request body; `CodexUpstream` then picks the account and points the
flow at the backend. Errors come out in the client's format (the Router marks each flow's format).
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, read_json, reply_json, set_codex_body
from cliproxy.addons.translate import anthropic, registry


def serve(flow: http.HTTPFlow, st: FlowState, runtime: Runtime, body: Any = None) -> None:
    """Serve a client API request: translate the flow's body (read here unless given) for its route and
    hand it on to the upstream addon, or answer `count_tokens` at once."""
    if body is None:
        body = read_json(flow)
    if st["route"] == "count_tokens":
        reply_json(flow, 200, json.dumps({"input_tokens": anthropic.count_tokens(body, runtime.config.settings)}).encode())
        return
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        st["client_model"] = body["model"]
    api = registry.APIS[st["route"]]
    headers = {k.lower(): v for k, v in flow.request.headers.items()}
    set_codex_body(flow, st, api.to_codex(body, runtime.config.settings, headers))


class ClientApis:
    name = "cliproxy_client_apis"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @on_claimed("chat", "responses", "compact", "messages", "count_tokens")
    def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if not st.get("ready"):  # Amp serves its local calls through `serve` already
            serve(flow, st, self.runtime)
