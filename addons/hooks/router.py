"""Addon: claims the requests cliproxy serves and answers the local routes (client keys: ClientAccess, before it).

Local routes are the model list (OpenAI's or Anthropic's shape), `HEAD /`, and clear errors for
unknown paths and methods. Translated routes are left to the format addons that follow.
"""

from __future__ import annotations

import json
import time

from cliproxy.addons.core import routes
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, claim, guarded, on_claimed, reply_json
from cliproxy.addons.mitm.modes import is_base_url_listener
from cliproxy.addons.translate import errors
from cliproxy.addons.translate.headers import check_line_breaks
from mitmproxy import http

_CREATED = 1_700_000_000  # the backend publishes no dates; a fixed, plausible timestamp


def openai_model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "openai"}


def anthropic_model(model_id: str) -> dict:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-01-01T00:00:00Z"}


def websocket_refused() -> errors.ProxyError:
    """The answer to a Responses WebSocket upgrade: 426 makes the Codex CLI switch to HTTP at once
    (other statuses cost it seven retries, several seconds)."""
    return errors.ProxyError(426, "cliproxy serves this Responses request over HTTP: send POST /v1/responses (the WebSocket transport is "
                             "switched off with responses-websocket: false, or no account can take it)",
                             "invalid_request_error", "websocket_not_supported")


class Router:
    name = "cliproxy_router"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        req = flow.request
        route = routes.classify(
            req.pretty_host, req.path, req.method,
            reverse_listener=is_base_url_listener(flow.client_conn.proxy_mode),
            anthropic_client="anthropic-version" in req.headers,
            websocket=req.headers.get("upgrade", "").lower() == "websocket",
        )
        if route is None:
            return
        st = claim(flow, route.name, route.format)
        st["t0"] = time.time()
        st["max_request_bytes"] = self.runtime.config.max_request_bytes  # http_framing counts the body against it as it arrives
        check_line_breaks(req.headers.items(multi=True))  # claimed flows are forwarded: no folded or smuggled lines
        if route.model_id is not None:
            st["model_id"] = route.model_id
        length = req.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.runtime.config.max_request_bytes:
            raise self._too_large()

    @on_claimed()
    def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if len(flow.request.raw_content or b"") > self.runtime.config.max_request_bytes:
            raise self._too_large()
        route = st["route"]
        if route == "models":
            self._models(flow, st["format"])
        elif route == "model":
            self._model(flow, st["format"], st["model_id"])
        elif route == "ping":
            flow.response = http.Response.make(200, b"", {"content-type": "text/plain"})
        elif route == "method_not_allowed":
            raise errors.ProxyError(405, f"{flow.request.method} is not allowed on {flow.request.path.split('?')[0]}", "invalid_request_error", "method_not_allowed")
        elif route == "not_found":
            raise errors.ProxyError(404, f"cliproxy does not serve {flow.request.method} {flow.request.path.split('?')[0]}; it serves /v1/chat/completions, /v1/responses, /v1/models and /v1/messages", "invalid_request_error", "not_found")

    def _too_large(self) -> errors.ProxyError:
        return errors.request_too_large(self.runtime.config.max_request_bytes)

    def _models(self, flow: http.HTTPFlow, fmt: str) -> None:
        ids = [m.id for m in self.runtime.config.settings.catalog.listed()]
        ids += [alias for up in self.runtime.config.api_key_upstreams for _, alias in up.models if alias not in ids]
        if fmt == "anthropic":
            data = [anthropic_model(i) for i in ids]
            body = {"data": data, "has_more": False, "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}
        else:
            body = {"object": "list", "data": [openai_model(i) for i in ids]}
        reply_json(flow, 200, json.dumps(body).encode())

    def _model(self, flow: http.HTTPFlow, fmt: str, model_id: str) -> None:
        catalog = self.runtime.config.settings.catalog
        choice = catalog.resolve(model_id)
        if catalog.info(choice.model) is None:
            raise errors.ProxyError(404, f"model {model_id!r} is not in cliproxy's catalog", "invalid_request_error", "model_not_found")
        body = anthropic_model(model_id) if fmt == "anthropic" else openai_model(model_id)
        reply_json(flow, 200, json.dumps(body).encode())
