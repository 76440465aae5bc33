"""Addon: claims the requests cliproxy serves and answers the local routes (client keys: ClientAccess, before it).

Local routes are the model list, the Codex usage endpoint, `HEAD /`, and clear errors for unknown paths and methods. The list
comes in three shapes: OpenAI's, Anthropic's (a client that sends `anthropic-version`), and the Codex
CLI's own `{"models": [...]}` (for `GET /v1/models?client_version=…` and `/backend-api/codex/models`),
which carries the backend's entries as they are (levels, context window, lite flag). Translated routes
are left to the format addons that follow.
"""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

from mitmproxy import http

from cliproxy.addons.core import routes, usage
from cliproxy.addons.core.config import ApiKeyUpstream
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, claim, guarded, on_claimed, reply_json
from cliproxy.addons.mitm.modes import is_base_url_listener
from cliproxy.addons.translate import catalog as cat
from cliproxy.addons.translate import errors
from cliproxy.addons.translate.headers import check_line_breaks

_CREATED = 1_700_000_000  # the backend publishes no dates; a fixed, plausible timestamp


def openai_model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "openai"}


def anthropic_model(model_id: str, display_name: str | None = None) -> dict:
    return {"type": "model", "id": model_id, "display_name": display_name or model_id, "created_at": "2025-01-01T00:00:00Z"}


def websocket_refused() -> errors.ProxyError:
    """The answer to a Responses WebSocket upgrade: 426 makes the Codex CLI switch to HTTP at once
    (other statuses cost it seven retries, several seconds)."""
    return errors.ProxyError(
        426,
        "cliproxy serves this Responses request over HTTP: send POST /v1/responses (the WebSocket transport is "
        "switched off with responses-websocket: false, or no account can take it)",
        "invalid_request_error",
        "websocket_not_supported",
    )


def answer_usage(flow: http.HTTPFlow, runtime: Runtime) -> None:
    """The Codex usage endpoint, from the pool's quota state (see `core.usage` for which account it shows)."""
    headers = {k.lower(): v for k, v in flow.request.headers.items()}
    session = usage.session_of(headers, dict(flow.request.query.items()))
    pinned = runtime.pool.pinned(session)
    serving = [m for m in runtime.pool.members if not isinstance(m.source, ApiKeyUpstream) and not m.parked]
    members, scope = ([pinned], "account") if pinned is not None and pinned in serving else (serving, "pool")
    if not members:
        raise errors.ProxyError(
            503,
            f"no ChatGPT account is logged in, so there is no usage to show; run `cliproxy login` (auth dir {runtime.config.auth_dir})",
            "server_error",
            "auth_unavailable",
        )
    plans = {m.key: getattr(m.source, "plan", "") for m in members}
    body = usage.payload(members, plans, time.time(), scope)
    reply_json(flow, 200, json.dumps(body).encode(), {"cache-control": "no-store"})
    st = flow.metadata["cliproxy"]
    st["account"] = members[0].label if scope == "account" else f"pool of {len(members)}"


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
            req.pretty_host,
            req.path,
            req.method,
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
        if route.ids:
            st["ids"] = list(route.ids)
        length = req.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.runtime.config.max_request_bytes:
            raise self._too_large()

    @on_claimed()
    def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if len(flow.request.raw_content or b"") > self.runtime.config.max_request_bytes:
            raise self._too_large()
        route = st["route"]
        if route == "models" and "client_version" in parse_qs(urlsplit(flow.request.path).query):
            self._codex_models(flow)  # the Codex CLI asks its provider for the list in the backend's shape
        elif route == "models":
            self._models(flow, st["format"])
        elif route == "codex_models":
            if not is_base_url_listener(flow.client_conn.proxy_mode) and not self.runtime.config.codex_cli_pooling:
                st["passthrough"] = True  # the CLI's own account, own list: chatgpt.com answers
                return
            self._codex_models(flow)
        elif route == "model":
            self._model(flow, st["format"], st["model_id"])
        elif route == "usage":
            answer_usage(flow, self.runtime)
        elif route == "ping":
            flow.response = http.Response.make(200, b"", {"content-type": "text/plain"})
        elif route == "method_not_allowed":
            raise errors.ProxyError(
                405,
                f"{flow.request.method} is not allowed on {flow.request.path.split('?')[0]}",
                "invalid_request_error",
                "method_not_allowed",
            )
        elif route == "not_found":
            raise errors.ProxyError(
                404,
                f"cliproxy does not serve {flow.request.method} {flow.request.path.split('?')[0]}; it serves /v1/chat/completions, /v1/responses, /v1/models and /v1/messages",
                "invalid_request_error",
                "not_found",
            )

    def _too_large(self) -> errors.ProxyError:
        return errors.request_too_large(self.runtime.config.max_request_bytes)

    def _models(self, flow: http.HTTPFlow, fmt: str) -> None:
        ids = self.runtime.catalog.usable()
        if fmt == "anthropic":
            catalog = self.runtime.config.settings.catalog
            data = [anthropic_model(i, info.display_name if (info := catalog.info(i)) else None) for i in ids]
            body = {"data": data, "has_more": False, "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}
        else:
            body = {"object": "list", "data": [openai_model(i) for i in ids]}
        reply_json(flow, 200, json.dumps(body).encode())

    def _codex_models(self, flow: http.HTTPFlow) -> None:
        """`{"models": [...]}`: the backend's entries for the models some account may use, for the client's version."""
        versions = parse_qs(urlsplit(flow.request.path).query).get("client_version")
        version = versions[0] if versions else None
        listing = cat.codex_listing(self.runtime.config.settings.catalog, version, self.runtime.catalog.usable_all())
        body = json.dumps(listing, ensure_ascii=False).encode()
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:16]}"'
        if flow.request.headers.get("if-none-match") == etag:
            flow.response = http.Response.make(304, b"", {"etag": etag})
            return
        reply_json(flow, 200, body, {"etag": etag})

    def _model(self, flow: http.HTTPFlow, fmt: str, model_id: str) -> None:
        catalog = self.runtime.config.settings.catalog
        choice = catalog.resolve(model_id)
        if (unknown := self.runtime.catalog.model_error(choice.model)) is not None:
            raise unknown
        info = catalog.info(choice.model)
        body = anthropic_model(model_id, info.display_name if info else None) if fmt == "anthropic" else openai_model(model_id)
        reply_json(flow, 200, json.dumps(body).encode())
