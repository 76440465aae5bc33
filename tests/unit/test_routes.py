"""Which requests cliproxy claims."""

import pytest

from cliproxy.addons.core.routes import classify


@pytest.mark.parametrize(
    "host,path,method,reverse,anthropic,expected",
    [
        ("cliproxy.invalid", "/v1/chat/completions", "POST", True, False, ("chat", "openai")),
        ("cliproxy.invalid", "/chat/completions", "POST", True, False, ("chat", "openai")),
        ("api.openai.com", "/v1/responses?x=1", "POST", False, False, ("responses", "openai")),
        ("api.openai.com", "/v1/models", "GET", False, False, ("models", "openai")),
        ("cliproxy.invalid", "/v1/models", "GET", True, True, ("models", "anthropic")),
        ("api.anthropic.com", "/v1/messages?beta=true", "POST", False, False, ("messages", "anthropic")),
        ("cliproxy.invalid", "/v1/messages/count_tokens", "POST", True, False, ("count_tokens", "anthropic")),
        ("cliproxy.invalid", "/", "HEAD", True, False, ("ping", "openai")),
        ("cliproxy.invalid", "/", "GET", True, False, ("status_page", "openai")),
        ("cliproxy.invalid", "/?range=7d", "GET", True, False, ("status_page", "openai")),
        ("cliproxy.invalid", "/", "POST", True, False, ("not_found", "openai")),
        ("cliproxy.invalid", "/cliproxy/status.json", "GET", True, False, ("status_json", "openai")),
        ("cliproxy.invalid", "/cliproxy/status.json?range=1h", "HEAD", True, False, ("status_json", "openai")),
        ("cliproxy.invalid", "/cliproxy/status.json", "POST", True, False, ("method_not_allowed", "openai")),
        ("api.openai.com", "/", "GET", False, False, ("not_found", "openai")),  # HTTPS_PROXY mode: no page
        ("api.openai.com", "/cliproxy/status.json", "GET", False, False, ("not_found", "openai")),
        ("cliproxy.invalid", "/v1/images/generations", "POST", True, False, ("images_generations", "openai")),
        ("cliproxy.invalid", "/images/edits", "POST", True, False, ("images_edits", "openai")),
        ("api.openai.com", "/v1/images/edits", "POST", False, False, ("images_edits", "openai")),
        ("api.openai.com", "/v1/images/generations", "GET", False, False, ("method_not_allowed", "openai")),
        ("api.openai.com", "/v1/images/variations", "POST", False, False, ("not_found", "openai")),
        ("cliproxy.invalid", "/v1/chat/completions", "GET", True, False, ("method_not_allowed", "openai")),
        ("api.openai.com", "/v1/embeddings", "POST", False, False, ("not_found", "openai")),
        ("cliproxy.invalid", "/api/provider/anthropic/v1/messages", "POST", True, False, ("amp_provider", "anthropic")),
        ("cliproxy.invalid", "/api/provider/openai/v1/chat/completions", "POST", True, False, ("amp_provider", "openai")),
        ("cliproxy.invalid", "/api/internal", "POST", True, False, ("amp_proxy", "openai")),
        ("cliproxy.invalid", "/threads/T-1", "GET", True, False, ("amp_proxy", "openai")),
        ("cliproxy.invalid", "/threads.rss", "GET", True, False, ("amp_proxy", "openai")),
        ("ampcode.com", "/anything", "GET", False, False, ("amp_proxy", "openai")),
        ("chatgpt.com", "/backend-api/codex/responses", "POST", False, False, ("codex", "openai")),
        ("cliproxy.invalid", "/v1/responses/compact", "POST", True, False, ("compact", "openai")),
        ("cliproxy.invalid", "/responses/compact", "POST", True, False, ("compact", "openai")),
        ("api.openai.com", "/v1/responses/compact", "POST", False, False, ("compact", "openai")),
        ("cliproxy.invalid", "/v1/responses/compact", "GET", True, False, ("method_not_allowed", "openai")),
        ("cliproxy.invalid", "/backend-api/codex/responses/compact", "POST", True, False, ("compact", "openai")),
        ("chatgpt.com", "/backend-api/codex/responses/compact", "POST", False, False, ("codex_compact", "openai")),
        ("cliproxy.invalid", "/backend-api/wham/usage", "GET", True, False, ("usage", "openai")),
        ("cliproxy.invalid", "/api/codex/usage", "GET", True, False, ("usage", "openai")),  # not Amp's /api/
        ("cliproxy.invalid", "/api/codex/usage", "POST", True, False, ("method_not_allowed", "openai")),
        ("chatgpt.com", "/backend-api/wham/usage", "GET", False, False, ("codex_usage", "openai")),
        ("chatgpt.com", "/backend-api/codex/models?client_version=0.169.0", "GET", False, False, ("codex_models", "openai")),
        ("cliproxy.invalid", "/backend-api/codex/models", "GET", True, False, ("codex_models", "openai")),
        ("cliproxy.invalid", "/v1/models?client_version=0.169.0", "GET", True, False, ("models", "openai")),
    ],
)
def test_claimed(host, path, method, reverse, anthropic, expected):
    route = classify(host, path, method, reverse_listener=reverse, anthropic_client=anthropic)
    assert (route.name, route.format) == expected


@pytest.mark.parametrize(
    "host,path",
    [
        ("example.com", "/v1/chat/completions"),
        ("chatgpt.com", "/backend-api/conversation"),
        ("chatgpt.com", "/backend-api/codex/models"),
        ("chatgpt.com", "/backend-api/wham/accounts/check"),
    ],
)
def test_left_alone(host, path):
    assert classify(host, path, "POST", reverse_listener=False, anthropic_client=False) is None


@pytest.mark.parametrize(
    "host,path,reverse,expected",
    [
        ("cliproxy.invalid", "/v1/responses", True, "responses_websocket"),  # Codex's built-in provider tries this first
        ("cliproxy.invalid", "/responses", True, "responses_websocket"),  # base URL given without /v1
        ("cliproxy.invalid", "/backend-api/codex/responses", True, "responses_websocket"),  # the backend's own path on the base URL
        ("api.openai.com", "/v1/responses", False, "responses_websocket"),
        ("api.openai.com", "/v1/chat/completions", False, "method_not_allowed"),  # only Responses has a WebSocket transport
        ("chatgpt.com", "/backend-api/codex/responses", False, "codex_websocket"),  # refused only when pooling
        ("cliproxy.invalid", "/actors/gateway/threadActor/websocket/", True, "amp_proxy"),  # Amp's threads go upstream
    ],
)
def test_websocket_upgrades(host, path, reverse, expected):
    assert classify(host, path, "GET", reverse_listener=reverse, anthropic_client=False, websocket=True).name == expected
    if host == "chatgpt.com":
        assert classify(host, path, "GET", reverse_listener=reverse, anthropic_client=False) is None


@pytest.mark.parametrize(
    "host,path,method,expected",
    [
        ("cliproxy.invalid", "/v1/responses/resp_1", "GET", ("response_get", ("resp_1",))),
        ("cliproxy.invalid", "/v1/responses/resp_1", "HEAD", ("response_get", ("resp_1",))),
        ("api.openai.com", "/v1/responses/resp_1?include=x", "DELETE", ("response_delete", ("resp_1",))),
        ("cliproxy.invalid", "/responses/resp_1/input_items", "GET", ("response_input_items", ("resp_1",))),  # base URL without /v1
        ("cliproxy.invalid", "/v1/responses/resp_1", "POST", ("method_not_allowed", ("resp_1",))),
        ("cliproxy.invalid", "/v1/responses/compact", "POST", ("compact", ())),  # not an id: the compaction route
        ("cliproxy.invalid", "/v1/responses/resp_1/cancel", "POST", ("not_found", ())),
        ("cliproxy.invalid", "/v1/conversations", "POST", ("conversation_create", ())),
        ("cliproxy.invalid", "/v1/conversations", "GET", ("method_not_allowed", ())),
        ("api.openai.com", "/v1/conversations/conv_1", "GET", ("conversation_get", ("conv_1",))),
        ("cliproxy.invalid", "/v1/conversations/conv_1", "POST", ("conversation_update", ("conv_1",))),
        ("cliproxy.invalid", "/v1/conversations/conv_1", "DELETE", ("conversation_delete", ("conv_1",))),
        ("cliproxy.invalid", "/v1/conversations/conv_1/items?limit=5", "GET", ("conversation_items", ("conv_1",))),
        ("cliproxy.invalid", "/conversations/conv_1/items", "POST", ("conversation_items_add", ("conv_1",))),
        ("cliproxy.invalid", "/v1/conversations/conv_1/items/msg_1", "GET", ("conversation_item_get", ("conv_1", "msg_1"))),
        ("cliproxy.invalid", "/v1/conversations/conv_1/items/msg_1", "DELETE", ("conversation_item_delete", ("conv_1", "msg_1"))),
        ("cliproxy.invalid", "/v1/conversations/conv_1/items/msg_1", "POST", ("method_not_allowed", ("conv_1", "msg_1"))),
        ("cliproxy.invalid", "/v1/conversations/conv_1/other", "GET", ("not_found", ())),
    ],
)
def test_stored_state_routes(host, path, method, expected):
    route = classify(host, path, method, reverse_listener=host == "cliproxy.invalid", anthropic_client=False)
    assert (route.name, route.ids) == expected and route.format == "openai"
