"""Which requests cliproxy claims."""

import pytest
from cliproxy.addons.core.routes import classify


@pytest.mark.parametrize("host,path,method,reverse,anthropic,expected", [
    ("cliproxy.invalid", "/v1/chat/completions", "POST", True, False, ("chat", "openai")),
    ("cliproxy.invalid", "/chat/completions", "POST", True, False, ("chat", "openai")),
    ("api.openai.com", "/v1/responses?x=1", "POST", False, False, ("responses", "openai")),
    ("api.openai.com", "/v1/models", "GET", False, False, ("models", "openai")),
    ("cliproxy.invalid", "/v1/models", "GET", True, True, ("models", "anthropic")),
    ("api.anthropic.com", "/v1/messages?beta=true", "POST", False, False, ("messages", "anthropic")),
    ("cliproxy.invalid", "/v1/messages/count_tokens", "POST", True, False, ("count_tokens", "anthropic")),
    ("cliproxy.invalid", "/", "HEAD", True, False, ("ping", "openai")),
    ("cliproxy.invalid", "/v1/chat/completions", "GET", True, False, ("method_not_allowed", "openai")),
    ("api.openai.com", "/v1/embeddings", "POST", False, False, ("not_found", "openai")),
    ("cliproxy.invalid", "/api/provider/anthropic/v1/messages", "POST", True, False, ("amp_provider", "anthropic")),
    ("cliproxy.invalid", "/api/provider/openai/v1/chat/completions", "POST", True, False, ("amp_provider", "openai")),
    ("cliproxy.invalid", "/api/internal", "POST", True, False, ("amp_proxy", "openai")),
    ("cliproxy.invalid", "/threads/T-1", "GET", True, False, ("amp_proxy", "openai")),
    ("cliproxy.invalid", "/threads.rss", "GET", True, False, ("amp_proxy", "openai")),
    ("ampcode.com", "/anything", "GET", False, False, ("amp_proxy", "openai")),
    ("chatgpt.com", "/backend-api/codex/responses", "POST", False, False, ("codex", "openai")),
])
def test_claimed(host, path, method, reverse, anthropic, expected):
    route = classify(host, path, method, reverse_listener=reverse, anthropic_client=anthropic)
    assert (route.name, route.format) == expected


@pytest.mark.parametrize("host,path", [
    ("example.com", "/v1/chat/completions"),
    ("chatgpt.com", "/backend-api/conversation"),
    ("chatgpt.com", "/backend-api/codex/models"),
])
def test_left_alone(host, path):
    assert classify(host, path, "POST", reverse_listener=False, anthropic_client=False) is None


@pytest.mark.parametrize("host,path,reverse,expected", [
    ("cliproxy.invalid", "/v1/responses", True, "responses_websocket"),  # Codex's built-in provider tries this first
    ("cliproxy.invalid", "/responses", True, "responses_websocket"),  # base URL given without /v1
    ("cliproxy.invalid", "/backend-api/codex/responses", True, "responses_websocket"),  # the backend's own path on the base URL
    ("api.openai.com", "/v1/responses", False, "responses_websocket"),
    ("api.openai.com", "/v1/chat/completions", False, "method_not_allowed"),  # only Responses has a WebSocket transport
    ("chatgpt.com", "/backend-api/codex/responses", False, "codex_websocket"),  # refused only when pooling
    ("cliproxy.invalid", "/actors/gateway/threadActor/websocket/", True, "amp_proxy"),  # Amp's threads go upstream
])
def test_websocket_upgrades(host, path, reverse, expected):
    assert classify(host, path, "GET", reverse_listener=reverse, anthropic_client=False, websocket=True).name == expected
    if host == "chatgpt.com":
        assert classify(host, path, "GET", reverse_listener=reverse, anthropic_client=False) is None
