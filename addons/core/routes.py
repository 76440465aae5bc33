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
    "/v1/responses/compact": "compact",
    "/v1/models": "models",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/images/generations": "images_generations",
    "/v1/images/edits": "images_edits",
}


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # chat | responses | compact | usage | models | model | messages | count_tokens | not_found | ...
    format: ClientFormat
    model_id: str | None = None  # for GET /v1/models/{id}
    ids: tuple[str, ...] = ()  # stored responses and conversations: the ids in the path


#: Stored state served from cliproxy's store: (path shape, method) -> route. `*` is an id.
_STORED = {
    (("responses", "*"), "GET"): "response_get",
    (("responses", "*"), "DELETE"): "response_delete",
    (("responses", "*", "input_items"), "GET"): "response_input_items",
    (("conversations",), "POST"): "conversation_create",
    (("conversations", "*"), "GET"): "conversation_get",
    (("conversations", "*"), "POST"): "conversation_update",
    (("conversations", "*"), "DELETE"): "conversation_delete",
    (("conversations", "*", "items"), "GET"): "conversation_items",
    (("conversations", "*", "items"), "POST"): "conversation_items_add",
    (("conversations", "*", "items", "*"), "GET"): "conversation_item_get",
    (("conversations", "*", "items", "*"), "DELETE"): "conversation_item_delete",
}
_STORED_SHAPES = {shape for shape, _ in _STORED}


def _stored(path: str, method: str) -> Route | None:
    """The route of a stored-state path (`/v1/responses/{id}`, `/v1/conversations/...`), or None."""
    if not path.startswith("/v1/"):
        return None
    parts = path.split("/")[2:]  # after /v1
    if parts[0] not in ("responses", "conversations") or path == "/v1/responses":
        return None
    shape = tuple("*" if n % 2 else p for n, p in enumerate(parts))
    if shape not in _STORED_SHAPES or any(not p for p in parts):
        return None
    if shape == ("responses", "*") and parts[1] == "compact":
        return None  # POST /v1/responses/compact is another route
    ids = tuple(p for n, p in enumerate(parts) if n % 2)
    name = _STORED.get((shape, "GET" if method == "HEAD" else method), "method_not_allowed")
    return Route(name, "openai", ids=ids)


def is_intercepted_host(host: str | None) -> bool:
    return host is not None and host.lower().rstrip(".") in INTERCEPTED_HOSTS


#: Ampcode control-plane paths served (by proxying to the Amp upstream) on the base-URL listener.
_AMP_PREFIXES = ("/api/", "/actors/", "/auth", "/threads", "/docs", "/settings", "/news.rss")
CODEX_PATH = "/backend-api/codex/responses"
CODEX_COMPACT_PATH = CODEX_PATH + "/compact"
#: The usage endpoint the Codex CLI's `/status` reads: `/backend-api/wham/usage` when its ChatGPT base URL
#: holds `/backend-api`, else `/api/codex/usage`; answered from the pool's quota state.
USAGE_PATHS = ("/backend-api/wham/usage", "/api/codex/usage")
CODEX_MODELS_PATH = "/backend-api/codex/models"  # the Codex CLI's model list, in its own shape
STATUS_JSON_PATH = "/cliproxy/status.json"  # the status page's data; the page itself is `GET /`


def _is_amp_path(path: str) -> bool:
    return path == "/api" or any(
        path == p.rstrip("/") or path.startswith(p if p.endswith("/") else p + "/") or path.startswith(p + ".") for p in _AMP_PREFIXES
    )


def classify(host: str, path: str, method: str, *, reverse_listener: bool, anthropic_client: bool, websocket: bool = False) -> Route | None:
    """The route of a request, or None when cliproxy leaves it alone. `websocket`: a WebSocket upgrade."""
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if not reverse_listener:
        if host == "chatgpt.com":
            if path == CODEX_PATH and (method == "POST" or websocket):
                return Route("codex" if method == "POST" else "codex_websocket", "openai")
            if path == CODEX_COMPACT_PATH and method == "POST":
                return Route("codex_compact", "openai")
            if path == USAGE_PATHS[0] and method in ("GET", "HEAD"):
                return Route("codex_usage", "openai")
            if path == CODEX_MODELS_PATH and method in ("GET", "HEAD"):
                return Route("codex_models", "openai")  # answered only with codex-cli-pooling; else passed on
            return None
        if host not in INTERCEPTED_HOSTS:
            return None
    if reverse_listener and path == "/" and method == "GET":
        return Route("status_page", "openai")  # the status page (HEAD / stays the cheap ping below)
    if reverse_listener and path == STATUS_JSON_PATH:
        return Route("status_json" if method in ("GET", "HEAD") else "method_not_allowed", "openai")
    if reverse_listener and path in USAGE_PATHS:
        return Route("usage" if method in ("GET", "HEAD") else "method_not_allowed", "openai")
    if reverse_listener and path == CODEX_COMPACT_PATH:
        return Route("compact" if method == "POST" else "method_not_allowed", "openai")
    if path.startswith("/api/provider/"):
        provider = path.split("/")[3]
        return Route("amp_provider", "anthropic" if provider == "anthropic" else "openai")
    if host == "ampcode.com" or (reverse_listener and _is_amp_path(path)):
        return Route("amp_proxy", "openai")
    if path == CODEX_MODELS_PATH and method in ("GET", "HEAD"):
        return Route("codex_models", "openai")
    if reverse_listener and websocket and path == CODEX_PATH:
        return Route("responses_websocket", "openai")  # the Codex CLI given the base URL of the backend's path
    if not path.startswith("/v1/") and (f"/v1{path}" in _OPENAI_PATHS or path.startswith(("/responses/", "/conversations"))):
        path = "/v1" + path  # base URL given without /v1
    fmt: ClientFormat = "anthropic" if anthropic_client or host == "api.anthropic.com" or path.startswith("/v1/messages") else "openai"
    if (stored := _stored(path, method)) is not None:
        return stored
    name = _OPENAI_PATHS.get(path)
    if method == "OPTIONS" and (name or path.startswith("/v1/") or path == "/"):
        return Route("options", fmt)  # a browser's CORS preflight (or a plain OPTIONS), answered locally
    if name == "models" and method in ("GET", "HEAD"):
        return Route("models", fmt)
    if path.startswith("/v1/models/") and method in ("GET", "HEAD"):
        return Route("model", fmt, path[len("/v1/models/") :])
    if name and name != "models" and method == "POST":
        return Route(name, fmt)
    if name == "responses" and websocket:
        return Route("responses_websocket", fmt)  # served unless `responses-websocket: false` (then 426)
    if name:
        return Route("method_not_allowed", fmt)
    if path == "/" and method == "HEAD":
        return Route("ping", fmt)
    return Route("not_found", fmt)
