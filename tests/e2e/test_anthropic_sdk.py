"""The official Anthropic SDK through the real proxy, by base URL and through HTTPS_PROXY."""

import ssl

import anthropic
import httpx
import pytest

from tests.conftest import ACCOUNT_ID, access_token_of, anthropic_sdk, mint_account
from tests.fakes.codex_backend import sse, turn, usage_limit
from tests.proxyproc import start_proxy

MODEL = "claude-sonnet-4-5"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SIG = "gAAAAABreplayMe-EncryptedReasoning_0123456789=="
WEATHER = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.fixture
def araw(proxy, mode):
    """A plain httpx client for hand-made Anthropic requests, in both modes."""
    if mode == "base_url":
        client = httpx.Client(base_url=proxy.base_url, timeout=30)
    else:
        client = httpx.Client(
            base_url="https://api.anthropic.com", proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30
        )
    with client:
        yield client


def test_message_non_stream(anthropic_client, backend, proxy_home):
    msg = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=1024,
        system="Be brief.",
        extra_body={"temperature": 0.2},
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert [b.type for b in msg.content] == ["text"]  # no thinking asked, none returned
    assert msg.content[0].text == "You said: hello there" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (34, 17, 8)
    assert msg.model == MODEL and msg.role == "assistant"  # echoed, as Anthropic does
    got = backend.received[-1]
    token = access_token_of(next((proxy_home / "auth").glob("*.json")))
    assert got.headers["authorization"] == f"Bearer {token}" and got.headers["chatgpt-account-id"] == ACCOUNT_ID
    assert "x-api-key" not in got.headers and "anthropic-version" not in got.headers
    body = got.json
    # sonnet maps to gpt-6.1-sol, a Responses Lite model: no `instructions`, the lite header, reasoning over all turns
    assert body["model"] == "gpt-6.1-sol" and body["store"] is False and body["stream"] is True and "instructions" not in body
    assert got.headers["x-openai-internal-codex-responses-lite"] == "true"
    assert body["input"][0] == {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]}
    assert body["reasoning"] == {"effort": "medium", "context": "all_turns"} and "temperature" not in body and "max_tokens" not in body
    assert got.headers["session-id"] == body["prompt_cache_key"]


def test_stream_text_and_events(anthropic_client, backend):
    backend.replies.append(sse(turn().reasoning("Let me think.").text("Hello, world!").events(), keepalive_every=3))
    with anthropic_client.messages.stream(model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello, world!"
    assert [b.type for b in final.content] == ["text"] and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 17 and final.usage.input_tokens == 34


def test_tool_use_round_trip(anthropic_client, backend):
    backend.replies.append(
        sse(
            turn()
            .text("Checking.")
            .tool_call("get_weather", {"city": "Paris"}, call_id="call_w1")
            .tool_call("get_weather", {"city": "Rome"}, call_id="call_w2")
            .events()
        )
    )
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=messages, tools=WEATHER, tool_choice={"type": "auto", "disable_parallel_tool_use": False}
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.id, u.name, u.input) for u in uses] == [
        ("call_w1", "get_weather", {"city": "Paris"}),
        ("call_w2", "get_weather", {"city": "Rome"}),
    ]
    sent = backend.received[-1].json
    declared = sent["input"][0]  # Responses Lite: the tools travel in an `additional_tools` item, no top-level `tools`
    assert "tools" not in sent and declared["type"] == "additional_tools"
    assert declared["tools"] == [
        {
            "type": "namespace",
            "name": "functions",
            "description": "",
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": WEATHER[0]["input_schema"],
                    "strict": False,
                }
            ],
        }
    ]
    assert sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False

    messages += [
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": f"sunny in {u.input['city']}"} for u in uses]},
    ]
    backend.replies.append(sse(turn().text("Both sunny.").events()))
    msg = anthropic_client.messages.create(model=MODEL, max_tokens=1024, messages=messages, tools=WEATHER)
    assert msg.content[0].text == "Both sunny."
    items = backend.received[-1].json["input"]
    assert [i["type"] for i in items] == [
        "additional_tools",
        "message",
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert items[5] == {"type": "function_call_output", "call_id": "call_w1", "output": "sunny in Paris"}


def test_thinking_signature_is_replayed_on_the_next_turn(anthropic_client, backend):
    backend.replies.append(
        sse(turn().reasoning("Plan: call the tool.", encrypted=SIG).tool_call("get_weather", {"city": "Oslo"}, call_id="call_t").events())
    )
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    thinking = {"type": "enabled", "budget_tokens": 2048}
    with anthropic_client.messages.stream(model=MODEL, max_tokens=4096, thinking=thinking, messages=messages, tools=WEATHER) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "content_block_delta" in kinds
    assert backend.received[-1].json["reasoning"] == {"effort": "medium", "summary": "auto", "context": "all_turns"}
    block = final.content[0]
    assert (block.type, block.thinking, block.signature) == ("thinking", "Plan: call the tool.", SIG)

    messages += [
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_t", "content": "snow"}]},
    ]
    backend.replies.append(sse(turn().reasoning("Done.").text("It snows.").events()))
    msg = anthropic_client.messages.create(model=MODEL, max_tokens=4096, thinking=thinking, messages=messages, tools=WEATHER)
    assert [b.type for b in msg.content] == ["thinking", "text"] and msg.content[1].text == "It snows."
    items = backend.received[-1].json["input"]
    assert {"type": "reasoning", "summary": [], "encrypted_content": SIG} in items
    assert [i["type"] for i in items] == ["additional_tools", "message", "reasoning", "function_call", "function_call_output"]


def test_image_input(anthropic_client, backend):
    anthropic_client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            }
        ],
    )
    content = backend.received[-1].json["input"][0]["content"]
    assert content == [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
    ]


def test_claude_code_model_names(anthropic_client, backend):
    for model, upstream in (
        ("claude-opus-4-8", "gpt-6.1-sol"),
        ("claude-haiku-4-5-20251001", "gpt-6-luna"),
        ("gpt-6.1-terra[1m]", "gpt-6.1-terra"),
    ):
        anthropic_client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "x"}])
        assert backend.received[-1].json["model"] == upstream


def test_bad_input_is_an_anthropic_400(anthropic_client, araw, backend):
    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=[])
    assert e.value.status_code == 400
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    assert "messages" in e.value.body["error"]["message"]
    for body in (b"{nope", b"", b'{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}'):
        r = araw.post("/v1/messages", content=body, headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})
        assert r.status_code == 400 and r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    assert backend.received == []


def test_failure_mid_stream_raises_in_the_sdk(anthropic_client, backend):
    backend.replies.append(sse(turn().text("partial").failed().events()))
    with pytest.raises(anthropic.APIStatusError) as e:
        with anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]) as stream:
            stream.get_final_message()
    assert e.value.body["error"]["type"] == "overloaded_error" and "overloaded" in e.value.body["error"]["message"]


def test_upstream_cut_mid_stream_ends_with_an_error_event(anthropic_client, backend):
    backend.replies.append(sse(turn().text("partial answer here").events(), cut_after=8))
    text = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        with anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]) as stream:
            for delta in stream.text_stream:
                text += delta
    assert text == "partial answer here"
    assert e.value.body["error"]["type"] == "api_error" and "stream closed" in e.value.body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_usage_limit_is_a_rate_limit_error(tmp_path, backend_server, backend, mode, monkeypatch, stream):
    mint_account(tmp_path / "auth")  # a proxy of its own: the cool-down must not touch other tests
    proxy = start_proxy(
        tmp_path / "p",
        {"auth-dir": str(tmp_path / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"},
    )
    try:
        client = anthropic_sdk(proxy, mode, monkeypatch)
        backend.replies.append(usage_limit(resets_in=120))
        with pytest.raises(anthropic.RateLimitError) as e:
            client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}], stream=stream)
        assert e.value.status_code == 429 and e.value.body["error"]["type"] == "rate_limit_error"
        assert int(e.value.response.headers["retry-after"]) in range(110, 121)
        with pytest.raises(anthropic.RateLimitError):  # answered locally while the only account rests
            client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}])
        assert len(backend.received) == 1
    finally:
        proxy.stop()


def test_head_root_and_models_list(anthropic_client, araw, backend):
    assert araw.head("/").status_code == 200
    models = anthropic_client.models.list()
    ids = [m.id for m in models.data]
    assert "gpt-5.5" in ids and all(m.type == "model" for m in models.data)
    r = araw.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert r.json()["has_more"] is False and r.json()["first_id"] == ids[0]
    assert backend.received == []


def test_count_tokens_is_answered_locally(anthropic_client, backend):
    small = anthropic_client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    big = anthropic_client.messages.count_tokens(
        model=MODEL, system="Be brief.", tools=WEATHER, messages=[{"role": "user", "content": "The quick brown fox. " * 200}]
    )
    assert 0 < small.input_tokens < 20 and 800 < big.input_tokens < 1500
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.count_tokens(model=MODEL, messages=[])
    assert backend.received == []
