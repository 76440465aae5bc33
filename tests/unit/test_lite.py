"""Responses Lite vs classic form in the translators, the faithful Responses pass-through, and the
upstream headers (table-driven, pure parts; `upstream_headers` builds mitmproxy Headers)."""

import copy
import json

import pytest
from mitmproxy import http

from cliproxy.addons.core.config import ConfigError, parse
from cliproxy.addons.core.runtime import Credential
from cliproxy.addons.hooks.codex_upstream import forwarded_headers, upstream_headers
from cliproxy.addons.translate import anthropic, anthropic_stream, chat, codex_body, registry, responses
from cliproxy.addons.translate.codex_body import LITE_HEADER, Settings
from cliproxy.addons.translate.headers import codex_client, codex_user_agent
from cliproxy.addons.translate.stream import collect
from cliproxy.auth.pool import Member
from tests.fakes.codex_backend import Received, default_lite, form_problem, turn

S = Settings()
LITE, CLASSIC = "gpt-5.6-sol", "gpt-5.5"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}


def wire(events):
    return b"".join(f"event: {k}\ndata: {json.dumps(p)}\n\n".encode() for k, p in events)


def accepted(call, lite=default_lite) -> bool:
    """Whether the fake backend (which refuses the wrong form, as the real one does) takes this call."""
    req = Received("POST", "/backend-api/codex/responses", {k.lower(): v for k, v in call.headers.items()}, json.dumps(call.body).encode())
    return form_problem(req, lite) is None


def chat_call(model, **extra):
    body = {
        "model": model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
        **extra,
    }
    return chat.request_to_codex(body, S)


def messages_call(model, **extra):
    body = {
        "model": model,
        "max_tokens": 100,
        "system": "Be brief.",
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
        "tools": [{"name": "get_weather", "input_schema": WEATHER}],
        **extra,
    }
    return anthropic.request_to_codex(body, S)


# ---------------------------------------------------------------------------------------------
# The translators: lite form for lite models, classic for the others


@pytest.mark.parametrize("build", [chat_call, messages_call], ids=["chat", "messages"])
def test_lite_model_gets_the_lite_form(build):
    call = build(LITE)
    b = call.body
    assert call.headers == {LITE_HEADER: "true"}
    assert "instructions" not in b and "tools" not in b
    first = b["input"][0]
    assert first["type"] == "additional_tools" and first["role"] == "developer"
    [namespace] = first["tools"]
    assert namespace["type"] == "namespace" and namespace["name"] == "functions"
    assert [(t["type"], t["name"]) for t in namespace["tools"]] == [("function", "get_weather")]
    assert namespace["tools"][0]["parameters"]["properties"] == WEATHER["properties"]
    assert b["input"][1] == {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]}
    assert b["tool_choice"] == "auto" and b["parallel_tool_calls"] is False
    assert b["reasoning"]["context"] == "all_turns" and b["reasoning"]["summary"] == "auto"  # the CLI sends summary in lite when asked
    assert b["store"] is False and b["stream"] is True and b["include"] == ["reasoning.encrypted_content"]
    assert accepted(call)


@pytest.mark.parametrize("build", [chat_call, messages_call], ids=["chat", "messages"])
def test_classic_model_keeps_the_classic_form(build):
    call = build(CLASSIC)
    b = call.body
    assert call.headers == {}
    assert b["instructions"] == "" and [t["name"] for t in b["tools"]] == ["get_weather"]
    assert all(i["type"] != "additional_tools" for i in b["input"]) and "context" not in b["reasoning"]
    assert b["parallel_tool_calls"] is True
    assert accepted(call)
    # the same classic body for a lite model is refused, as upstream refuses it
    assert not accepted(codex_body.CodexCall({**b, "model": LITE}, True, LITE, "medium", headers={LITE_HEADER: "true"}))


def test_lite_without_tools_has_no_tool_fields_and_the_fake_wants_the_header():
    call = chat.request_to_codex({"model": LITE, "messages": [{"role": "user", "content": "hi"}]}, S)
    assert "tool_choice" not in call.body and "parallel_tool_calls" not in call.body
    assert all(i["type"] == "message" for i in call.body["input"])
    assert accepted(call) and not accepted(codex_body.CodexCall(call.body, True, LITE, "medium"))


@pytest.mark.parametrize(
    "choice,expected",
    [
        (None, "auto"),
        ("auto", "auto"),
        ("required", "required"),
        ("none", "none"),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "function", "name": "get_weather"}),
    ],
)
def test_lite_keeps_the_clients_tool_choice(choice, expected):
    assert chat_call(LITE, **({"tool_choice": choice} if choice else {})).body["tool_choice"] == expected


def test_lite_puts_custom_tools_in_the_namespace_and_builtins_beside_it():
    body = {
        "model": LITE,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "custom", "custom": {"name": "apply_patch", "format": {"type": "text"}}},
            {"type": "web_search_preview"},
            {"type": "function", "function": {"name": "f", "parameters": WEATHER}},
        ],
    }
    tools = chat.request_to_codex(body, S).body["input"][0]["tools"]
    assert [(t["type"], t.get("name")) for t in tools] == [("namespace", "functions"), ("web_search", None)]
    assert [(t["type"], t["name"]) for t in tools[0]["tools"]] == [("custom", "apply_patch"), ("function", "f")]


def test_config_marks_models_lite():
    cfg = parse({"models": [{"id": "my-lite", "lite": True}, {"id": "my-classic"}]})
    assert cfg.settings.catalog.lite("my-lite") and not cfg.settings.catalog.lite("my-classic")
    assert S.catalog.lite("gpt-5.6-terra") and not S.catalog.lite("gpt-5.5") and not S.catalog.lite("no-such-model")
    with pytest.raises(ConfigError, match=r"models\[0\]\.lite"):
        parse({"models": [{"id": "x", "lite": "yes"}]})


@pytest.mark.parametrize("value,expected", [(None, "0.169.0"), ("0.170.1", "0.170.1"), (0.17, "0.17")])
def test_codex_client_version(value, expected):
    assert parse({} if value is None else {"codex-client-version": value}).codex_client_version == expected


@pytest.mark.parametrize("value", ["0.169.0 (cliproxy)", "", "v1\r\nx: y", True, [1]])
def test_codex_client_version_must_be_a_release_number(value):
    with pytest.raises(ConfigError, match="codex-client-version"):
        parse({"codex-client-version": value})


# ---------------------------------------------------------------------------------------------
# Answers map back the same in both forms


def test_chat_answer_with_tool_call_is_the_same_for_lite_and_classic():
    events = turn(LITE).reasoning("Looking.").tool_call("get_weather", {"city": "Paris"}, call_id="call_w").events()
    for model in (LITE, CLASSIC):
        call = chat_call(model)
        answer = chat.completion_from(collect(wire(events)), model, **{k: call.options[k] for k in ("reasoning", "tool_names")})
        msg = answer["choices"][0]["message"]
        assert answer["choices"][0]["finish_reason"] == "tool_calls"
        assert msg["tool_calls"] == [
            {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ]
        assert msg["reasoning_content"] == "Looking."


def test_chat_lite_shortened_tool_names_map_back():
    long = "mcp__server__" + "x" * 70
    body = {
        "model": LITE,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": long, "parameters": WEATHER}}],
    }
    call = chat.request_to_codex(body, S)
    [short] = [t["name"] for t in call.body["input"][0]["tools"][0]["tools"]]
    assert len(short) <= 64 and short != long
    events = turn(LITE).tool_call(short, {}, call_id="c1").events()
    stream = chat.ChatStream(LITE, **call.options)
    out = b"".join(stream(wire(events)) + stream(b"")).decode()
    assert long in out and short not in out


def test_anthropic_lite_round_trip_tool_use_and_thinking():
    call = messages_call(LITE)
    items = call.body["input"]
    assert [i["type"] for i in items] == ["additional_tools", "message", "message", "function_call", "function_call_output"]
    assert items[3]["name"] == "get_weather" and items[4] == {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}
    events = turn(LITE).reasoning("Plan.").tool_call("get_weather", {"city": "Rome"}, call_id="toolu_2").events()
    msg = anthropic_stream.message_from(collect(wire(events)), LITE, **call.options)
    assert msg["stop_reason"] == "tool_use"
    assert [b["type"] for b in msg["content"]] == ["thinking", "tool_use"]
    assert msg["content"][1]["name"] == "get_weather" and msg["content"][1]["input"] == {"city": "Rome"}


def test_anthropic_token_estimate_does_not_depend_on_the_form():
    lite, classic = messages_call(LITE).options["input_tokens"], messages_call(CLASSIC).options["input_tokens"]
    assert lite == classic and lite > 20


# ---------------------------------------------------------------------------------------------
# Faithful pass-through of Codex-format bodies

CLI_LITE_BODY = {
    "model": "gpt-6.1-sol",
    "stream": True,
    "input": [
        {
            "type": "additional_tools",
            "id": "at_1",
            "role": "developer",
            "tools": [{"type": "namespace", "name": "functions", "description": "", "tools": [{"type": "custom", "name": "exec"}]}],
        },
        {
            "type": "message",
            "id": "msg_1",
            "role": "developer",
            "content": [{"type": "input_text", "text": "You are Codex."}],
            "internal_chat_message_metadata_passthrough": {"k": "v"},
        },
        {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c1", "name": "exec", "input": "text(1)"},
        {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": "c1", "output": "1"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "low", "context": "all_turns"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "thread-1",
    "text": {"verbosity": "low"},
    "client_metadata": {"thread_id": "thread-1", "turn_id": "t1"},
}


@pytest.mark.parametrize("route", ["responses", "codex"])
def test_codex_cli_lite_body_passes_unchanged(route):
    body = copy.deepcopy(CLI_LITE_BODY)
    call = registry.APIS[route].to_codex(body, S, {LITE_HEADER: "true"})
    assert call.body == CLI_LITE_BODY
    assert call.headers == {LITE_HEADER: "true"} and call.stream is True and call.model == "gpt-6.1-sol"
    assert accepted(call)


@pytest.mark.parametrize(
    "change,expected",
    [
        # the effort is merged into the client's reasoning object (never rebuilt): context kept, no summary added
        ({"model": "gpt-6.1-sol(high)"}, {"model": "gpt-6.1-sol", "reasoning": {"effort": "high", "context": "all_turns"}}),
        (
            {"reasoning": {"effort": "low", "summary": "detailed", "context": "all_turns"}},
            {"reasoning": {"effort": "low", "summary": "detailed", "context": "all_turns"}},
        ),
        ({"reasoning": {"context": "all_turns"}}, {"reasoning": {"context": "all_turns", "effort": "medium"}}),
        # include is merged, not replaced
        ({"include": ["web_search_call.action.sources"]}, {"include": ["web_search_call.action.sources", "reasoning.encrypted_content"]}),
        ({"include": []}, {"include": ["reasoning.encrypted_content"]}),
        # forced values and rejected fields
        (
            {"store": True, "stream": False, "temperature": 0.3, "max_output_tokens": 9, "previous_response_id": "r1"},
            {"store": False, "stream": True},
        ),
    ],
)
def test_pass_through_changes_only_what_it_must(change, expected):
    body = {**copy.deepcopy(CLI_LITE_BODY), **change}
    call = responses.request_to_codex(body, S, {LITE_HEADER: "true"})
    want = {**CLI_LITE_BODY, **{k: v for k, v in change.items() if k in CLI_LITE_BODY or k in ("reasoning", "include")}, **expected}
    assert call.body == want
    assert "instructions" not in call.body


def test_pass_through_of_a_classic_body_keeps_every_client_field():
    body = {
        "model": "gpt-5.5",
        "input": [{"type": "message", "id": "msg_9", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "text": {"verbosity": "high"},
        "client_metadata": {"a": "b"},
        "reasoning": {"effort": "xhigh"},
        "prompt_cache_key": "k",
        "stream": True,
    }
    call = responses.request_to_codex(copy.deepcopy(body), S)
    assert call.headers == {} and "instructions" not in call.body
    assert {k: call.body[k] for k in body} == {**body, "reasoning": {"effort": "xhigh"}}
    assert accepted(call)


def test_a_classic_body_for_a_lite_model_is_converted():
    body = {
        "model": LITE,
        "instructions": "Be kind.",
        "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": WEATHER}],
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    call = responses.request_to_codex(body, S)
    b = call.body
    assert call.headers == {LITE_HEADER: "true"} and "instructions" not in b and "tools" not in b
    assert [i["type"] for i in b["input"]] == ["additional_tools", "message", "message"]
    assert b["input"][1]["content"][0]["text"] == "Be kind."
    assert b["reasoning"] == {"effort": "high", "summary": "auto", "context": "all_turns"}
    assert b["tool_choice"] == "auto" and b["parallel_tool_calls"] is False
    assert accepted(call)


def test_a_plain_body_for_a_lite_model_only_gains_the_header():
    call = responses.request_to_codex({"model": LITE, "input": "hi"}, S)
    assert call.headers == {LITE_HEADER: "true"} and "context" not in call.body["reasoning"] and "parallel_tool_calls" not in call.body
    assert accepted(call)


# ---------------------------------------------------------------------------------------------
# Headers

CRED = Credential(
    Member("acct", "acct@example.com", None),
    "https://chatgpt.com/backend-api/codex/responses",
    (("authorization", "Bearer tok"), ("chatgpt-account-id", "acct-1")),
)
CLI_HEADERS = [
    ("originator", "codex_exec"),
    ("user-agent", "codex_exec/0.169.0 (Debian 12.0.0; x86_64) unknown (codex_exec; 0.169.0)"),
    ("version", "0.169.0"),
    ("session-id", "th"),
    ("thread-id", "th"),
    ("x-client-request-id", "th"),
    ("x-codex-window-id", "th:0"),
    ("x-codex-beta-features", "remote_compaction_v2"),
    (LITE_HEADER, "true"),
    ("authorization", "Bearer sk-local"),
    ("accept-language", "en"),
]


def headers_for(client, extra=(), version="0.169.0"):
    fwd = forwarded_headers(http.Headers([(k.encode(), v.encode()) for k, v in client]))
    return upstream_headers(fwd, CRED, "chatgpt.com", "cache-key", list(extra), version)


def test_a_codex_clients_own_headers_go_upstream():
    h = headers_for(CLI_HEADERS, [(LITE_HEADER, "true")])
    for name, value in CLI_HEADERS:
        if name not in ("authorization", "accept-language"):
            assert h.get_all(name) == [value], name
    assert h["authorization"] == "Bearer tok" and "accept-language" not in h


def test_other_clients_get_the_official_clis_identity():
    h = headers_for([("user-agent", "OpenAI/Python 2.0"), ("originator", "my-app")], version="0.170.0")
    assert h["originator"] == "codex_cli_rs" and h["version"] == "0.170.0"
    assert h["user-agent"].startswith("codex_cli_rs/0.170.0 (") and h["user-agent"].endswith(") unknown")
    assert "cliproxy" not in h["user-agent"].lower() and "OpenAI/Python" not in h["user-agent"]
    assert h["session-id"] == "cache-key" and LITE_HEADER not in h


@pytest.mark.parametrize(
    "originator,codex",
    [
        ("codex_exec", True),
        ("codex_cli_rs", True),
        ("codex_vscode", True),
        ("codex", False),
        ("my-app", False),
        ("", False),
        ("codex_exec\r\nx", False),
    ],
)
def test_codex_client(originator, codex):
    assert codex_client(originator) is codex


def test_user_agent_shape():
    ua = codex_user_agent("codex_cli_rs", "0.169.0")
    head, _, rest = ua.partition(" (")
    assert head == "codex_cli_rs/0.169.0" and rest.endswith(") unknown") and "; " in rest


def test_forwarded_header_values_are_checked():
    from cliproxy.addons.translate.errors import ProxyError

    with pytest.raises(ProxyError) as exc:
        forwarded_headers(http.Headers([(b"originator", b"codex_exec"), (b"user-agent", "codex\u00e9".encode())]))
    assert exc.value.status == 400 and "user-agent" in exc.value.message
