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


def classify(host: str, path: str, method: str, *, reverse_listener: bool, anthropic_client: bool) -> Route | None:
    """The route of a request, or None when cliproxy leaves it alone."""
    host = host.lower().rstrip(".")
    if not reverse_listener and host not in INTERCEPTED_HOSTS - {"chatgpt.com", "ampcode.com"}:
        return None
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if not path.startswith("/v1/") and path.count("/") == 1 and f"/v1{path}" in _OPENAI_PATHS:
        path = "/v1" + path  # base URL given without /v1
    fmt: ClientFormat = "anthropic" if anthropic_client or host == "api.anthropic.com" or path.startswith("/v1/messages") else "openai"
    name = _OPENAI_PATHS.get(path)
    if name == "models" and method in ("GET", "HEAD"):
        return Route("models", fmt)
    if path.startswith("/v1/models/") and method in ("GET", "HEAD"):
        return Route("model", fmt, path[len("/v1/models/"):])
    if name and name != "models" and method == "POST":
        return Route(name, fmt)
    if name:
        return Route("method_not_allowed", fmt)
    if path == "/" and method == "HEAD":
        return Route("ping", fmt)
    return Route("not_found", fmt)
