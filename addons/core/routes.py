"""Which requests cliproxy serves, decided from host, path and listener (pure; no mitmproxy import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ClientFormat = Literal["openai", "anthropic"]

#: Hosts intercepted in regular (HTTPS_PROXY) mode; TLS to any other host passes through untouched.
INTERCEPTED_HOSTS = frozenset({"api.openai.com", "api.anthropic.com", "ampcode.com", "chatgpt.com"})
#: The reverse listener forwards to this placeholder; a request that escaped the addon can never
#: reach a real host through it (the name cannot resolve).
REVERSE_TARGET = "cliproxy.invalid"

_OPENAI_PATHS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/models": "models",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
}


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # chat | responses | models | model | messages | count_tokens | not_found | ...
    format: ClientFormat
    model_id: str | None = None  # for GET /v1/models/{id}


def is_intercepted_host(host: str | None) -> bool:
    return bool(host) and host.lower().rstrip(".") in INTERCEPTED_HOSTS


#: Ampcode control-plane paths served (by proxying to the Amp upstream) on the base-URL listener.
_AMP_PREFIXES = ("/api/", "/actors/", "/auth", "/threads", "/docs", "/settings", "/news.rss")
CODEX_PATH = "/backend-api/codex/responses"


def _is_amp_path(path: str) -> bool:
    return path == "/api" or any(path == p.rstrip("/") or path.startswith(p if p.endswith("/") else p + "/") or path.startswith(p + ".") for p in _AMP_PREFIXES)


def classify(host: str, path: str, method: str, *, reverse_listener: bool, anthropic_client: bool, websocket: bool = False) -> Route | None:
    """The route of a request, or None when cliproxy leaves it alone. `websocket`: a WebSocket upgrade."""
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if not reverse_listener:
        if host == "chatgpt.com":
            if path == CODEX_PATH and (method == "POST" or websocket):
                return Route("codex" if method == "POST" else "codex_websocket", "openai")
            return None
        if host not in INTERCEPTED_HOSTS:
            return None
    if path.startswith("/api/provider/"):
        provider = path.split("/")[3]
        return Route("amp_provider", "anthropic" if provider == "anthropic" else "openai")
    if host == "ampcode.com" or (reverse_listener and _is_amp_path(path)):
        return Route("amp_proxy", "openai")
    if reverse_listener and websocket and path == CODEX_PATH:
        return Route("responses_websocket", "openai")  # the Codex CLI given the base URL of the backend's path
    if not path.startswith("/v1/") and f"/v1{path}" in _OPENAI_PATHS:
        path = "/v1" + path  # base URL given without /v1
    fmt: ClientFormat = "anthropic" if anthropic_client or host == "api.anthropic.com" or path.startswith("/v1/messages") else "openai"
    name = _OPENAI_PATHS.get(path)
    if name == "models" and method in ("GET", "HEAD"):
        return Route("models", fmt)
    if path.startswith("/v1/models/") and method in ("GET", "HEAD"):
        return Route("model", fmt, path[len("/v1/models/"):])
    if name and name != "models" and method == "POST":
        return Route(name, fmt)
    if name == "responses" and websocket:
        return Route("responses_websocket", fmt)  # served unless `responses-websocket: false` (then 426)
    if name:
        return Route("method_not_allowed", fmt)
    if path == "/" and method == "HEAD":
        return Route("ping", fmt)
    return Route("not_found", fmt)
