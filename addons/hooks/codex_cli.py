"""Addon: pooling for the official Codex CLI when it talks to chatgpt.com through HTTPS_PROXY.

Opt-in with `codex-cli-pooling: true`. The CLI's own ChatGPT token is then swapped for a pool
account (with the pool's failover); its body is already in the backend's format and passes through
unchanged. Its WebSocket transport gets a pool account too (`ResponsesWebsocket`), or a 426 with
`responses-websocket: false`, on which the CLI switches to HTTP at once. Its legacy compaction
(`/responses/compact`) is served like a turn, and its usage endpoint (`/status`) is answered from the pool.
Without the switch, the CLI's requests go to chatgpt.com untouched.
"""

from __future__ import annotations

from mitmproxy import http

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.client_api import serve
from cliproxy.addons.hooks.router import answer_usage, websocket_refused
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, read_json
from cliproxy.addons.translate import errors


class CodexCliPooling:
    name = "cliproxy_codex_cli"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @on_claimed("codex", "codex_websocket", "codex_compact", "codex_usage")
    def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if not self.runtime.config.codex_cli_pooling:
            st["passthrough"] = True
            return
        if st["route"] == "codex_websocket":
            if not self.runtime.config.responses_websocket:
                raise websocket_refused()  # a WebSocket turn would reach chatgpt.com with the CLI's own account
            return  # served by ResponsesWebsocket with a pool account
        if st["route"] == "codex_usage":
            answer_usage(flow, self.runtime)  # the pool's limits, not those of the CLI's own account
            return
        body = read_json(flow)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise errors.bad_request("the Codex request needs a JSON object with a `model`", "model")
        serve(flow, st, self.runtime, body)
