"""Anthropic Messages translation: request mapping, streaming events, aggregation, token estimate."""

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from cliproxy.addons.core import config as configfile
from cliproxy.addons.translate import anthropic as A
from cliproxy.addons.translate import anthropic_stream as AS
from cliproxy.addons.translate import errors
from cliproxy.addons.translate.codex_body import Settings
from cliproxy.addons.translate.stream import collect, disconnected_error
from tests.fakes.codex_backend import turn
from tests.unit.test_chat_translate import run, wire

S = Settings()
CLASSIC = "gpt-5.5"  # the classic-form model (Claude families map to Responses Lite models; test_lite covers that form)
EVENT = TypeAdapter(RawMessageStreamEvent)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SIG = "gAAAAABfakeEncryptedReasoning=="
TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TOOL_TURN = (
    turn()
    .reasoning("First I look.", "Then I answer.")
    .text("Checking both.")
    .tool_call("get_weather", {"city": "Paris"})
    .tool_call("get_time", {"tz": "CET"})
    .events()
)


def req(**kw):
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}], **kw}


def translate(settings=S, **kw):
    return A.request_to_codex(req(**kw), settings)


def events(out):
    """The client frames as (event name, data) pairs; names must match the data's type."""
    pairs = []
    for frame in b"".join(out).decode().split("\n\n"):
        if not frame:
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        pairs.append((lines["event"], data))
    return pairs


def sdk_message(pairs):
    """Validate every event with the SDK's types and accumulate them as the SDK's stream helper does."""
    snapshot, json_bufs = None, {}
    for name, data in pairs:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=EVENT.validate_python(data), current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot


def assert_sequential_blocks(pairs):
    """Blocks are numbered 0, 1, 2… and each is started, filled and stopped before the next starts."""
    opened, expected = None, 0
    for name, data in pairs:
        if name == "content_block_start":
            assert opened is None and data["index"] == expected
            opened, expected = data["index"], expected + 1
        elif name in ("content_block_delta", "content_block_stop"):
            assert data["index"] == opened
            opened = None if name == "content_block_stop" else opened
    assert opened is None


def stream(events_, **options):
    return events(run(AS.MessagesStream("gpt-5.5", **options), wire(events_)))


# ---------------------------------------------------------------------------------------------
# Request


def test_request_mapping_covers_system_content_tools_and_history():
    body = req(
        model=CLASSIC,
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Look it up.", "signature": SIG},
                    {"type": "thinking", "thinking": "Claude's own.", "signature": "EqQBCkgIARABGAIiQ"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {"role": "system", "content": "Mid-conversation note."},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "sunny"}, {"type": "text", "text": "Thanks"}],
            },
        ],
        tools=[
            {
                **TOOLS[0],
                "cache_control": {"type": "ephemeral"},
                "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "properties": {"city": {"type": "string"}}},
            },
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3, "allowed_domains": ["example.com"]},
        ],
        temperature=0.3,
        top_k=5,
        stop_sequences=["x"],
        metadata={"user_id": "u"},
        context_management={"edits": []},
    )
    call = A.request_to_codex(body, S)
    b = call.body
    assert b["model"] == CLASSIC and b["store"] is False and b["stream"] is True and b["instructions"] == ""
    assert b["include"] == ["reasoning.encrypted_content"]
    assert [i.get("role") or i["type"] for i in b["input"]] == [
        "developer",
        "user",
        "reasoning",
        "assistant",
        "function_call",
        "developer",
        "function_call_output",
        "user",
    ]
    assert b["input"][0]["content"] == [{"type": "input_text", "text": "Be brief."}]
    assert b["input"][1]["content"] == [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
        {"type": "input_image", "image_url": "https://example.com/cat.png"},
        {"type": "input_file", "filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
    ]
    assert b["input"][2] == {"type": "reasoning", "summary": [], "encrypted_content": SIG}
    assert b["input"][3]["content"] == [{"type": "output_text", "text": "Let me check."}]
    assert b["input"][4] == {"type": "function_call", "call_id": "toolu_01A", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert b["input"][6] == {"type": "function_call_output", "call_id": "toolu_01A", "output": "sunny"}
    assert b["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"properties": {"city": {"type": "string"}}, "type": "object"},
            "strict": False,
        },
        {"type": "web_search", "filters": {"allowed_domains": ["example.com"]}},
    ]
    assert b["tool_choice"] == "auto" and b["parallel_tool_calls"] is True
    for gone in (
        "temperature",
        "top_k",
        "stop_sequences",
        "metadata",
        "context_management",
        "max_tokens",
        "messages",
        "system",
        "thinking",
    ):
        assert gone not in b
    assert b["prompt_cache_key"] and not call.stream and not call.options["thinking"]
    assert call.options == {
        "tool_names": {},
        "thinking": False,
        "input_tokens": call.options["input_tokens"],
        "client_model": CLASSIC,
        "limits": {"stop": ["x"], "max_tokens": 1024, "input_tokens": call.options["input_tokens"]},
    }


def test_tool_results_with_images_and_errors():
    call = translate(
        model=CLASSIC,
        messages=[
            {"role": "user", "content": "shoot"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "shot", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "shot", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "here"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "t2", "is_error": True, "content": [{"type": "text", "text": "disk full"}]},
                ],
            },
        ],
        tools=[{"name": "shot", "input_schema": {"type": "object"}}],
    )
    outputs = [i["output"] for i in call.body["input"] if i["type"] == "function_call_output"]
    assert outputs == [
        [{"type": "input_text", "text": "here"}, {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}],
        "Error: disk full",
    ]
    assert call.body["tools"][0]["parameters"] == {"type": "object", "properties": {}}


def test_tool_choice_and_parallel_mapping():
    web = {"type": "web_search_20250305", "name": "web_search"}
    cases = [
        ({"type": "auto"}, "auto", True),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "none"}, "none", True),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "name": "get_weather"}, True),
        ({"type": "tool", "name": "web_search"}, {"type": "web_search"}, True),
    ]
    for choice, expected, parallel in cases:
        b = translate(model=CLASSIC, tools=[*TOOLS, web], tool_choice=choice).body
        assert (b["tool_choice"], b["parallel_tool_calls"]) == (expected, parallel), choice
    assert "tool_choice" not in translate(model=CLASSIC).body and "parallel_tool_calls" not in translate(model=CLASSIC).body


@pytest.mark.parametrize(
    "thinking,output_config,effort,summary",
    [
        (None, None, "medium", False),
        (None, {"effort": "low"}, "low", False),
        ({"type": "enabled", "budget_tokens": 2000}, None, "medium", True),
        ({"type": "enabled", "budget_tokens": 20000}, None, "high", True),
        ({"type": "enabled", "budget_tokens": 31999}, None, "xhigh", True),
        ({"type": "enabled", "budget_tokens": 4000, "display": "omitted"}, None, "medium", False),
        ({"type": "adaptive"}, None, "xhigh", True),
        ({"type": "adaptive"}, {"effort": "high"}, "high", True),
        ({"type": "adaptive"}, {"effort": "max"}, "max", True),  # gpt-6.1-sol lists max (and ultra)
        ({"type": "auto"}, {"effort": "medium"}, "medium", True),
        ({"type": "disabled"}, None, "low", False),  # the model's lowest level
    ],
)
def test_thinking_picks_effort_and_summary(thinking, output_config, effort, summary):
    extra = {k: v for k, v in (("thinking", thinking), ("output_config", output_config)) if v is not None}
    call = translate(**extra)
    assert call.effort == effort and call.body["reasoning"]["effort"] == effort
    assert ("summary" in call.body["reasoning"]) is summary
    assert call.options["thinking"] is (thinking is not None and thinking["type"] != "disabled")


@pytest.mark.parametrize(
    "model,upstream,effort",
    [
        ("claude-opus-4-8", "gpt-6.1-sol", "medium"),
        ("claude-sonnet-5", "gpt-6.1-sol", "medium"),
        ("claude-haiku-4-5-20251001", "gpt-6-luna", "medium"),
        ("claude-opus-4-8[1m]", "gpt-6.1-sol", "medium"),
        ("gpt-6.1-terra[1m]", "gpt-6.1-terra", "medium"),
        ("claude-opus-4-8(high)", "gpt-6.1-sol", "high"),
        ("gpt-5.5(low)", "gpt-5.5", "low"),
        ("some-other-model", "some-other-model", "medium"),
    ],
)
def test_claude_model_names_map_to_codex_models(model, upstream, effort):
    call = translate(model=model)
    assert (call.model, call.body["model"], call.effort) == (upstream, upstream, effort)


def test_model_aliases_override_families_and_names():
    cfg = configfile.parse({"model-aliases": {"sonnet": "gpt-6-sol", "claude-opus-4-8": "gpt-5.6-sol", "haiku": "gpt-5.5(low)"}})
    assert translate(cfg.settings, model="claude-sonnet-5").model == "gpt-6-sol"
    assert translate(cfg.settings, model="claude-opus-4-8").model == "gpt-5.6-sol"
    assert translate(cfg.settings, model="claude-opus-4-1").model == "gpt-6.1-sol"  # family default still applies
    haiku = translate(cfg.settings, model="claude-haiku-4-5")
    assert (haiku.model, haiku.effort) == ("gpt-5.5", "low")


def test_long_tool_names_and_odd_ids_round_trip():
    name = "mcp__server__" + "x" * 80
    call = translate(
        model=CLASSIC,
        tools=[{"name": name, "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu.01/ä", "name": name, "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu.01/ä", "content": "ok"}]},
        ],
    )
    short = call.body["tools"][0]["name"]
    assert len(short) <= 64 and call.options["tool_names"] == {short: name}
    fc, out = call.body["input"][1], call.body["input"][2]
    assert fc["name"] == short and fc["call_id"] == out["call_id"] == "toolu_01__"
    pairs = stream(turn().tool_call(short, {"a": 1}, call_id="call.x:1").events(), **call.options)
    start = next(d for n, d in pairs if n == "content_block_start")
    assert start["content_block"]["name"] == name and start["content_block"]["id"] == "call_x_1"
    msg = AS.message_from(collect(wire(turn().tool_call(short, {"a": 1}).events())), "gpt-5.5", **call.options)
    assert msg["content"][0]["name"] == name
    assert A.safe_id("a" * 100) == A.safe_id("a" * 100) and len(A.safe_id("a" * 100)) == 64


def test_unknown_tool_result_becomes_text_and_metadata_session_keys_the_cache():
    call = translate(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "gone", "content": "late"}]}])
    assert call.body["input"][0]["content"][0]["text"] == "Tool result (gone):\nlate"
    meta = {"user_id": json.dumps({"device_id": "d", "session_id": "f0aaf813-7fe5-4923-9ead-6b7d54cdd984"})}
    a = translate(metadata=meta).body["prompt_cache_key"]
    assert (
        a
        == translate(
            metadata=meta,
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "more"}],
        ).body["prompt_cache_key"]
    )
    assert a != translate().body["prompt_cache_key"]
    assert A.request_to_codex(req(), S, session="f0aaf813-7fe5-4923-9ead-6b7d54cdd984").body["prompt_cache_key"] == a


def test_fast_service_tier_and_structured_output():
    b = translate(speed="fast", output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}).body
    assert b["service_tier"] == "priority"
    assert b["text"] == {"format": {"type": "json_schema", "name": "output", "schema": {"type": "object"}, "strict": False}}


@pytest.mark.parametrize(
    "change,param,needle",
    [
        ({"max_tokens": None}, "max_tokens", "max_tokens"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens"),
        ({"model": None}, "model", "model"),
        ({"messages": []}, "messages", "non-empty"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages", "role"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages", "non-empty"),
        ({"messages": [{"role": "user", "content": [{"type": "wizard"}]}]}, "messages", "wizard"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t9", "name": "get_weather", "input": {}}]},
                ]
            },
            "messages",
            "tool_result",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "y"}]}]},
            "messages",
            "user messages",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
            "messages",
            "base64 or url",
        ),
        ({"stream": "yes"}, "stream", "boolean"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens", "1024"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type", "adaptive"),
        ({"output_config": {"effort": "turbo"}}, "output_config.effort", "effort"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools", "custom tool"),
        ({"tools": [{"name": "x"}]}, "tools", "input_schema"),
        ({"tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice", "declared"),
        ({"system": [{"type": "image"}]}, "system", "text block"),
    ],
)
def test_bad_requests_say_what_to_fix(change, param, needle):
    body = {**req(), **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(errors.ProxyError) as e:
        A.request_to_codex(body, S)
    assert e.value.status == 400 and e.value.param == param and needle in e.value.message
    assert errors.anthropic_body(e.value)["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------------------------
# Stream


def test_stream_is_valid_anthropic_events_and_matches_aggregation():
    pairs = stream(TOOL_TURN, tool_names={}, thinking=True, input_tokens=99, client_model="claude-opus-4-8")
    names = [n for n, _ in pairs]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert pairs[0][1]["message"]["usage"]["input_tokens"] == 99
    msg = sdk_message(pairs)
    assert msg.model == "claude-opus-4-8"  # the client's name: Claude Code drops thinking of other models
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "First I look.\n\nThen I answer." and msg.content[0].signature == SIG
    assert msg.content[1].text == "Checking both."
    assert [(b.id, b.name, b.input) for b in msg.content[2:]] == [
        ("call_0002abc", "get_weather", {"city": "Paris"}),
        ("call_0003abc", "get_time", {"tz": "CET"}),
    ]
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (34, 17, 8)
    # block indices are consecutive and blocks never interleave
    assert_sequential_blocks(pairs)
    # the non-stream answer has the same content
    body = AS.message_from(collect(wire(TOOL_TURN)), "gpt-5.5", client_model="claude-opus-4-8")
    assert Message.model_validate(body).model == "claude-opus-4-8"
    assert body["content"] == [b.model_dump(exclude_none=True) for b in msg.content]
    assert body["stop_reason"] == "tool_use" and body["usage"]["cache_read_input_tokens"] == 8


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(wire(TOOL_TURN, crlf=True)) - 1), max_size=60), st.booleans())
def test_random_chunking_yields_identical_client_output(cuts, crlf):
    data = wire(TOOL_TURN, crlf=crlf)
    reference = b"".join(run(AS.MessagesStream("gpt-5.5"), wire(TOOL_TURN)))
    assert b"".join(run(AS.MessagesStream("gpt-5.5"), data, cuts)) == reference


def test_interleaved_upstream_items_come_out_one_block_at_a_time():
    def ev(kind, **kw):
        return (kind, {"type": kind, **kw})

    fc = {"type": "function_call", "status": "in_progress", "arguments": ""}
    seq = [
        ev("response.created", response={"id": "resp_1", "model": "gpt-5.5"}),
        ev("response.output_item.added", output_index=0, item={**fc, "id": "fc_a", "call_id": "call_a", "name": "one"}),
        ev("response.output_item.added", output_index=1, item={**fc, "id": "fc_b", "call_id": "call_b", "name": "two"}),
        ev("response.function_call_arguments.delta", item_id="fc_b", output_index=1, delta='{"b":'),
        ev("response.function_call_arguments.delta", item_id="fc_a", output_index=0, delta='{"a":'),
        ev("response.function_call_arguments.delta", item_id="fc_b", output_index=1, delta="2}"),
        ev(
            "response.output_item.done",
            output_index=1,
            item={**fc, "id": "fc_b", "call_id": "call_b", "name": "two", "arguments": '{"b":2}'},
        ),
        ev("response.function_call_arguments.delta", item_id="fc_a", output_index=0, delta="1}"),
        ev(
            "response.output_item.done",
            output_index=0,
            item={**fc, "id": "fc_a", "call_id": "call_a", "name": "one", "arguments": '{"a":1}'},
        ),
        ev(
            "response.completed",
            response={"id": "resp_1", "status": "completed", "output": [], "usage": {"input_tokens": 5, "output_tokens": 2}},
        ),
    ]
    pairs = stream(seq)
    assert_sequential_blocks(pairs)
    msg = sdk_message(pairs)
    assert [(b.name, b.input) for b in msg.content] == [("one", {"a": 1}), ("two", {"b": 2})]


def test_thinking_blocks_only_when_asked_and_signature_only_without_summary():
    hidden = stream(turn().reasoning("secret plan").text("Hi").events(), thinking=False)
    assert [b.type for b in sdk_message(hidden).content] == ["text"]
    assert "secret plan" not in json.dumps(hidden)
    bare = sdk_message(stream(turn().reasoning().text("Hi").events(), thinking=True))
    assert [(b.type, getattr(b, "thinking", None), getattr(b, "signature", None)) for b in bare.content[:1]] == [("thinking", "", SIG)]
    body = AS.message_from(collect(wire(turn().reasoning("plan").text("Hi").events())), "gpt-5.5", thinking=False)
    assert [b["type"] for b in body["content"]] == ["text"]


def test_text_sent_only_in_item_done_still_arrives():
    seq = [(k, p) for k, p in turn().text("whole").events() if k != "response.output_text.delta"]
    assert sdk_message(stream(seq)).content[0].text == "whole"


def test_web_search_call_becomes_server_tool_blocks():
    item = {
        "id": "ws_1",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "cliproxy", "sources": [{"type": "url", "url": "https://example.com/a"}]},
    }
    seq = [
        ("response.created", {"type": "response.created", "response": {"id": "resp_w", "model": "gpt-5.5"}}),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"id": "ws_1", "type": "web_search_call", "status": "in_progress"},
            },
        ),
        ("response.web_search_call.searching", {"type": "response.web_search_call.searching", "item_id": "ws_1", "output_index": 0}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        *[(k, {**p, "output_index": 1}) if "output_index" in p else (k, p) for k, p in turn().text("Found it.").events()[2:]],
    ]
    msg = sdk_message(stream(seq))
    assert [b.type for b in msg.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert msg.content[0].input == {"query": "cliproxy"} and msg.content[1].tool_use_id == msg.content[0].id
    assert msg.content[1].content[0].url == "https://example.com/a"
    assert msg.stop_reason == "end_turn"
    Message.model_validate(AS.message_from(collect(wire(seq)), "gpt-5.5"))


def test_keepalives_become_pings_and_idle_upstream_activity_pings():
    data = wire(turn().text("Hi").events())
    data = data.replace(b"event: response.in_progress", b": keep-alive\n\nevent: response.in_progress", 1)
    pairs = events(run(AS.MessagesStream("gpt-5.5"), data))
    assert [n for n, _ in pairs][:2] == ["message_start", "ping"] and pairs[1][1] == {"type": "ping"}
    now = [0.0]
    s = AS.MessagesStream("gpt-5.5", thinking=False, clock=lambda: now[0])
    evs = turn().reasoning("a long hidden plan").text("Hi").events()
    frames = [f"event: {k}\ndata: {json.dumps(p)}\n\n".encode() for k, p in evs]
    outputs = []
    for frame in frames:
        now[0] += 2.0
        outputs.append(s(frame))
    pings = [i for i, o in enumerate(outputs) if o == [AS.PING]]
    assert pings and all(b - a >= 3 for a, b in zip(pings, pings[1:]))  # at most one per PING_AFTER seconds
    assert b"".join(b"".join(o) for o in outputs).count(b"event: message_start") == 1


def test_failure_mid_stream_and_cut_stream_end_with_error_events():
    pairs = stream(turn().text("partial").failed().events())
    assert pairs[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "The server is overloaded. Please try again later."}},
    )
    assert "message_stop" not in [n for n, _ in pairs]
    pairs = stream(turn().text("partial").failed("context_length_exceeded", "Your input exceeds the context window.").events())
    assert pairs[-1][1]["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: Your input exceeds the context window.",
    }
    pairs = stream(turn().error().events())
    assert pairs[-1][1]["error"]["type"] == "rate_limit_error"
    data = wire(turn().text("partial answer").events())
    pairs = events(run(AS.MessagesStream("gpt-5.5"), data[: len(data) // 2]))
    assert pairs[-1][0] == "error" and pairs[-1][1]["error"]["type"] == "api_error"
    assert "stream closed before response.completed" in pairs[-1][1]["error"]["message"]


def test_buffered_answers_use_the_same_error_types_and_wording():
    """A non-streaming client gets the same Anthropic error as a streaming one for the same failure."""
    body = errors.render(
        errors.from_stream_failure({"response": {"error": {"code": "context_length_exceeded", "message": "too big"}}}), "anthropic"
    )[2]
    assert json.loads(body) == {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: too big"}}
    status, _, body = errors.render(disconnected_error(), "anthropic")
    assert status == 408 and json.loads(body)["error"]["type"] == "api_error"
    assert json.loads(errors.render(errors.ProxyError(503, "busy"), "anthropic")[2])["error"]["type"] == "overloaded_error"


def test_incomplete_maps_to_max_tokens():
    assert sdk_message(stream(turn().text("cut").incomplete().events())).stop_reason == "max_tokens"
    body = AS.message_from(collect(wire(turn().text("cut").incomplete().events())), "gpt-5.5")
    assert body["stop_reason"] == "max_tokens"


def test_output_only_in_the_terminal_event_is_still_sent():
    evs = turn().text("late").events(empty_output=False)
    seq = [e for e in evs if e[0] in ("response.created", "response.completed")]
    assert sdk_message(stream(seq)).content[0].text == "late"


# ---------------------------------------------------------------------------------------------
# count_tokens


def count(**kw):
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], **kw}
    return A.count_tokens(body, S)


def test_count_tokens_is_sane_and_monotonic():
    small = count()
    assert 3 <= small <= 20
    prose = "The quick brown fox jumps over the lazy dog. " * 100  # 1,001 o200k tokens
    assert 850 <= count(messages=[{"role": "user", "content": prose}]) <= 1200
    assert 560 <= count(messages=[{"role": "user", "content": "人工智能是计算机科学的一个分支。" * 60}]) <= 800  # 660
    longer = [count(messages=[{"role": "user", "content": "word " * n}]) for n in (10, 100, 1000, 10000)]
    assert longer == sorted(longer) and longer[-1] > 10 * longer[1]
    assert count(system="Be brief.") > small
    assert count(tools=TOOLS) > small + 10
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert count(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]) >= small + A.IMAGE_TOKENS
    # history with an unanswered tool use and no max_tokens is fine for counting
    assert (
        count(
            tools=TOOLS,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": {}}]},
            ],
        )
        > small
    )


def test_count_tokens_rejects_what_messages_rejects():
    with pytest.raises(errors.ProxyError):
        A.count_tokens({"model": "claude-sonnet-4-5", "messages": []}, S)
    with pytest.raises(errors.ProxyError):
        A.count_tokens({"messages": [{"role": "user", "content": "x"}]}, S)


# ---------------------------------------------------------------------------------------------
# Robustness: odd input is a 400, odd upstream events never break the stream

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "text", "id", "name", "source", "content", "x"]), inner, max_size=3)
    ),
    max_leaves=10,
)
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_use", "tool_result", "thinking", "search_result", "odd"]) | JSON},
    optional={
        "text": JSON,
        "source": JSON,
        "id": JSON,
        "name": JSON,
        "input": JSON,
        "content": JSON,
        "tool_use_id": JSON,
        "signature": JSON,
        "is_error": JSON,
    },
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]) | JSON, "content": st.text(max_size=5) | st.lists(BLOCK, max_size=3) | JSON}
)
BODY = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude-opus-4-8", "gpt-5.5(high)", "x"]) | JSON, "messages": st.lists(MESSAGE, max_size=3) | JSON},
    optional={
        "max_tokens": st.just(100) | JSON,
        "system": JSON | st.lists(BLOCK, max_size=2),
        "thinking": JSON,
        "output_config": JSON,
        "tools": JSON | st.lists(st.fixed_dictionaries({"name": JSON, "input_schema": JSON}, optional={"type": JSON}), max_size=2),
        "tool_choice": JSON,
        "stream": JSON,
        "metadata": JSON,
        "service_tier": JSON,
        "output_format": JSON,
    },
)


@settings(max_examples=400, deadline=None)
@given(BODY)
def test_any_request_body_translates_or_is_a_400(body):
    for fn in (lambda: A.request_to_codex(body, S), lambda: A.count_tokens(body, S)):
        try:
            fn()
        except errors.ProxyError as e:
            assert e.status == 400 and e.message


KINDS = [
    "response.created",
    "response.output_item.added",
    "response.output_item.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
]
ITEM = st.fixed_dictionaries(
    {"type": st.sampled_from(["reasoning", "message", "function_call", "web_search_call", "other"])},
    optional={
        "id": st.sampled_from(["a", "b"]),
        "call_id": JSON,
        "name": JSON,
        "arguments": st.text(max_size=5),
        "encrypted_content": st.text(max_size=5),
        "summary": JSON,
        "content": JSON,
        "action": JSON,
    },
)
EVENT_PAYLOAD = st.fixed_dictionaries(
    {},
    optional={
        "output_index": st.integers(0, 2) | JSON,
        "item_id": st.sampled_from(["a", "b"]),
        "item": ITEM | JSON,
        "delta": st.text(max_size=4) | JSON,
        "arguments": JSON,
        "response": JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), EVENT_PAYLOAD), max_size=12), st.booleans())
def test_odd_upstream_events_still_give_valid_anthropic_events(seq, thinking):
    out = run(AS.MessagesStream("gpt-5.5", thinking=thinking), wire([(k, {"type": k, **p}) for k, p in seq]))
    pairs = events(out)
    assert "could not translate" not in json.dumps(pairs)
    for name, data in pairs:
        if name not in ("ping", "error"):
            EVENT.validate_python(data)
    assert pairs[-1][0] in ("message_stop", "error")
