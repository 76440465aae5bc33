"""Responses Lite models and faithful pass-through through the real proxy: the openai SDK (chat with
tools, a Responses stream), the anthropic SDK with a tool, hand-made zstd bodies. The fake backend
refuses the classic form and lite bodies without the lite header for lite models, as upstream does."""

import copy
import json

import pytest
from backports import zstd

from tests.conftest import anthropic_sdk
from tests.fakes.codex_backend import LITE_HEADER, sse, turn

LITE = "gpt-5.6-sol"
WEATHER_FN = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def assert_sdk_identity(headers):
    """What a non-Codex client's request carries upstream: the official CLI's identity, never the proxy's name."""
    assert headers["originator"] == "codex_cli_rs" and headers["version"] == "0.169.0"
    assert headers["user-agent"].startswith("codex_cli_rs/0.169.0 (") and headers["user-agent"].endswith(") unknown")
    assert "cliproxy" not in headers["user-agent"].lower()


def test_openai_chat_with_tools_on_a_lite_model(openai_client, backend):
    backend.replies.append(sse(turn(LITE).reasoning("Checking.").tool_call("get_weather", {"city": "Paris"}, call_id="call_p").events()))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
    r = openai_client.chat.completions.create(model=LITE, messages=messages, tools=[WEATHER_FN])
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("call_p", "get_weather", {"city": "Paris"})
    ]
    got = backend.received[-1]
    body = got.json
    assert got.headers[LITE_HEADER] == "true"
    assert "instructions" not in body and "tools" not in body
    assert body["input"][0]["type"] == "additional_tools"
    assert body["input"][0]["tools"][0]["name"] == "functions" and body["input"][0]["tools"][0]["tools"][0]["name"] == "get_weather"
    assert body["input"][1]["role"] == "developer" and body["parallel_tool_calls"] is False and body["tool_choice"] == "auto"
    assert body["reasoning"]["context"] == "all_turns"
    assert_sdk_identity(got.headers)

    # the tool result goes back; the fake (which refuses a classic body here) answers
    messages += [msg.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": "call_p", "content": "sunny"}]
    r = openai_client.chat.completions.create(model=LITE, messages=messages, tools=[WEATHER_FN])
    assert r.choices[0].message.content == "You said: Weather in Paris?"
    items = backend.received[-1].json["input"]
    assert [i["type"] for i in items[-2:]] == ["function_call", "function_call_output"]
    assert items[-2]["name"] == "get_weather" and items[-1] == {"type": "function_call_output", "call_id": "call_p", "output": "sunny"}


def test_classic_model_still_gets_the_classic_form(openai_client, backend):
    r = openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_FN])
    assert r.choices[0].message.content == "You said: hi"
    got = backend.received[-1]
    assert LITE_HEADER not in got.headers and got.json["tools"][0]["name"] == "get_weather" and got.json["instructions"] == ""


CLIENT_BODY = {
    "model": "gpt-6.1-sol",
    "stream": True,
    "input": [
        {
            "type": "additional_tools",
            "id": "at_1",
            "role": "developer",
            "tools": [
                {
                    "type": "namespace",
                    "name": "functions",
                    "description": "",
                    "tools": [
                        {"type": "function", "name": "get_weather", "parameters": WEATHER_FN["function"]["parameters"], "strict": False}
                    ],
                }
            ],
        },
        {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
        {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "hello lite"}]},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "high", "context": "all_turns"},
    "store": False,
    "include": ["web_search_call.action.sources"],
    "prompt_cache_key": "thread-lite-1",
    "text": {"verbosity": "low"},
    "client_metadata": {"thread_id": "thread-lite-1", "turn_id": "t-1"},
}


def test_responses_stream_passes_client_fields_through(raw, backend):
    r = raw.post(
        "/v1/responses",
        json=CLIENT_BODY,
        headers={"authorization": "Bearer sk-x", LITE_HEADER: "true", "x-codex-window-id": "thread-lite-1:0"},
    )
    assert r.status_code == 200, r.text
    assert "event: response.completed" in r.text and "You said: hello lite" in r.text
    got = backend.received[-1]
    expected = {**copy.deepcopy(CLIENT_BODY), "include": ["web_search_call.action.sources", "reasoning.encrypted_content"]}
    assert got.json == expected  # nothing added (instructions, summary), nothing dropped, include merged
    assert got.headers[LITE_HEADER] == "true" and got.headers["x-codex-window-id"] == "thread-lite-1:0"
    assert got.headers["session-id"] == "thread-lite-1"
    assert_sdk_identity(got.headers)


def test_responses_sdk_classic_body_for_a_lite_model_is_converted(openai_client, backend):
    with openai_client.responses.stream(
        model=LITE,
        instructions="Be kind.",
        input="hi there",
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
    ) as s:
        final = s.get_final_response()
    assert final.output_text == "You said: hi there"
    got = backend.received[-1]
    assert got.headers[LITE_HEADER] == "true"
    body = got.json
    assert "instructions" not in body and "tools" not in body
    assert [i["type"] for i in body["input"]] == ["additional_tools", "message", "message"]


def test_zstd_compressed_body_is_decoded(raw, backend):
    body = {"model": "gpt-5.5", "input": "squeezed", "stream": False}
    r = raw.post(
        "/v1/responses",
        content=zstd.compress(json.dumps(body).encode()),
        headers={"content-type": "application/json", "content-encoding": "zstd"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"][-1]["content"][0]["text"] == "You said: squeezed"
    got = backend.received[-1]
    assert "content-encoding" not in got.headers and got.json["input"][0]["content"][0]["text"] == "squeezed"


@pytest.mark.parametrize("encoding", ["zstd", "x-unknown"])
def test_undecodable_body_is_a_clear_400(raw, backend, encoding):
    r = raw.post(
        "/v1/responses", content=b"not compressed at all", headers={"content-type": "application/json", "content-encoding": encoding}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert "content-encoding" in err["message"] and encoding in err["message"] and err["type"] == "invalid_request_error"
    assert backend.received == []


def test_anthropic_sdk_on_a_lite_model_with_a_tool(proxy, mode, monkeypatch, backend):
    client = anthropic_sdk(proxy, mode, monkeypatch)
    backend.replies.append(sse(turn(LITE).reasoning("Plan.").tool_call("get_weather", {"city": "Rome"}, call_id="toolu_r").events()))
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_FN["function"]["parameters"]}]
    msg = client.messages.create(
        model=f"{LITE}(high)",
        max_tokens=1024,
        system="Be brief.",
        tools=tools,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Weather in Rome?"}],
    )
    assert msg.stop_reason == "tool_use"
    use = [b for b in msg.content if b.type == "tool_use"]
    assert [(b.id, b.name, b.input) for b in use] == [("toolu_r", "get_weather", {"city": "Rome"})]
    assert [b.type for b in msg.content] == ["thinking", "tool_use"]
    got = backend.received[-1]
    body = got.json
    assert got.headers[LITE_HEADER] == "true" and "tools" not in body and "instructions" not in body
    assert body["input"][0]["type"] == "additional_tools" and body["reasoning"] == {
        "effort": "high",
        "summary": "auto",
        "context": "all_turns",
    }
    assert_sdk_identity(got.headers)

    follow = [
        {"role": "user", "content": "Weather in Rome?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_r", "content": "rainy"}]},
    ]
    done = client.messages.create(model=LITE, max_tokens=1024, tools=tools, messages=follow)
    assert done.stop_reason == "end_turn" and done.content[0].text == "You said: Weather in Rome?"
    assert backend.received[-1].json["input"][-1] == {"type": "function_call_output", "call_id": "toolu_r", "output": "rainy"}
