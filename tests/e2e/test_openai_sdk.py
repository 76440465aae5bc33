"""The official OpenAI SDK through the real proxy, by base URL and through HTTPS_PROXY."""

import json

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import ACCOUNT_ID, access_token_of
from tests.fakes.codex_backend import sse, turn


def test_chat_non_stream(openai_client, backend, proxy_home):
    r = openai_client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    )
    assert r.choices[0].message.content == "You said: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == 59
    got = backend.received[-1]
    token = access_token_of(next((proxy_home / "auth").glob("*.json")))
    assert got.headers["authorization"] == f"Bearer {token}"
    assert got.headers["chatgpt-account-id"] == ACCOUNT_ID
    assert got.headers["accept"] == "text/event-stream"
    body = got.json
    assert body["store"] is False and body["stream"] is True and body["instructions"] == ""
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["input"][0]["role"] == "developer"
    assert got.headers["session-id"] == body["prompt_cache_key"]


def test_chat_stream(openai_client, backend):
    backend.replies.append(sse(turn().reasoning("Let me think.").text("Hello, world!").events()))
    stream = openai_client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world!"
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert reasoning == "Let me think."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == 17


def test_tool_call_round_trip(openai_client, backend):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    backend.replies.append(
        sse(
            turn()
            .tool_call("get_weather", {"city": "Paris"}, call_id="call_w1")
            .tool_call("get_weather", {"city": "Rome"}, call_id="call_w2")
            .events()
        )
    )
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    with openai_client.chat.completions.stream(model="gpt-5.5", messages=messages, tools=tools) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("call_w1", "get_weather", {"city": "Paris"}),
        ("call_w2", "get_weather", {"city": "Rome"}),
    ]
    sent = backend.received[-1].json
    assert sent["tools"][0]["name"] == "get_weather" and sent["parallel_tool_calls"] is True

    messages += [msg.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": c.id, "content": f"sunny in {json.loads(c.function.arguments)['city']}"} for c in msg.tool_calls
    ]
    backend.replies.append(sse(turn().text("Both sunny.").events()))
    r = openai_client.chat.completions.create(model="gpt-5.5", messages=messages, tools=tools)
    assert r.choices[0].message.content == "Both sunny."
    items = backend.received[-1].json["input"]
    assert [i["type"] for i in items] == ["message", "function_call", "function_call", "function_call_output", "function_call_output"]
    assert items[3] == {"type": "function_call_output", "call_id": "call_w1", "output": "sunny in Paris"}


def test_image_input(openai_client, backend):
    url = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    openai_client.chat.completions.create(
        model="gpt-5.5",
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url, "detail": "low"}}],
            }
        ],
    )
    content = backend.received[-1].json["input"][0]["content"]
    assert content == [{"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": url}]


class Answer(BaseModel):
    city: str
    population: int


def test_json_schema_output(openai_client, backend):
    backend.replies.append(sse(turn().text('{"city":"Paris","population":2100000}').events()))
    r = openai_client.chat.completions.parse(model="gpt-5.5", messages=[{"role": "user", "content": "Paris?"}], response_format=Answer)
    assert r.choices[0].message.parsed == Answer(city="Paris", population=2100000)
    fmt = backend.received[-1].json["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "Answer" and fmt["strict"] is True


def test_reasoning_effort_via_suffix(openai_client, backend):
    openai_client.chat.completions.create(model="gpt-5.5(high)", messages=[{"role": "user", "content": "x"}])
    sent = backend.received[-1].json
    assert sent["model"] == "gpt-5.5" and sent["reasoning"]["effort"] == "high"
    openai_client.chat.completions.create(model="gpt-6-sol", messages=[{"role": "user", "content": "x"}], reasoning_effort="minimal")
    assert backend.received[-1].json["reasoning"]["effort"] == "low"  # clamped to the model's levels


def test_models_list(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert "gpt-5.5" in ids and "gpt-6.1-sol" in ids and "codex-auto-review" not in ids
    assert not {"gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex-spark"} & set(ids)


def test_responses_stream_and_final_response(openai_client, backend):
    backend.replies.append(sse(turn().reasoning("Plan.").text("Final words.").tool_call("lookup", {"q": 1}).events(empty_output=True)))
    with openai_client.responses.stream(
        model="gpt-5.5", input="hi", instructions="Be kind.", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Final words."
    assert final.output_text == "Final words."
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    sent = backend.received[-1].json
    assert sent["instructions"] == "Be kind." and sent["reasoning"] == {"effort": "low", "summary": "auto"}
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


def test_responses_non_stream(openai_client, backend):
    backend.replies.append(sse(turn().text("Plain.").events(empty_output=True)))
    r = openai_client.responses.create(
        model="gpt-5.5",
        input=[{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}],
        max_output_tokens=50,
        temperature=0.5,
    )
    assert r.output_text == "Plain." and r.usage.output_tokens == 17
    sent = backend.received[-1].json
    assert sent["input"][0]["role"] == "developer"
    assert "max_output_tokens" not in sent and "temperature" not in sent


def test_upstream_400_detail_becomes_openai_error(openai_client, backend):
    from tests.fakes.codex_backend import detail

    backend.replies.append(detail(400, "Unsupported parameter: foo"))
    with pytest.raises(openai.BadRequestError) as e:
        openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 400 and "Unsupported parameter: foo" in e.value.message


def test_failed_mid_stream_gives_sdk_error(openai_client, backend):
    backend.replies.append(sse(turn().text("partial").failed().events()))
    stream = openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError) as e:
        list(stream)
    assert "overloaded" in str(e.value.message)


@pytest.mark.parametrize(
    "body,status,needle",
    [
        (b"{nope", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b'{"model": "gpt-5.5", "messages": "hi"}', 400, "messages"),
        (b"[1, 2]", 400, "JSON object"),
    ],
)
def test_bad_input_gets_openai_error(raw, backend, body, status, needle):
    r = raw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"
    assert backend.received == []


def test_unknown_path_is_openai_404(raw, backend):
    r = raw.post("/v1/embeddings", json={"model": "x", "input": "y"})
    assert r.status_code == 404 and "does not serve" in r.json()["error"]["message"]
    assert backend.received == []
