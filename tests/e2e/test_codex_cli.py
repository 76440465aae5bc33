"""The official Codex CLI (`codex exec`) through the proxy, with a custom Responses provider."""

import json

import pytest

from tests.codexcli import agent_messages, codex_exec, provider_args, turn_completed
from tests.fakes.codex_backend import LITE_HEADER, PATH, sse, turn


def test_codex_exec_through_base_url(proxy, backend, tmp_path):
    backend.replies.append(sse(turn().reasoning("Short plan.").text("Hello from the fake backend.").events()))
    events = codex_exec(tmp_path, "-m", "gpt-5.5", *provider_args(proxy.base_url), "Say hello")
    assert agent_messages(events) == ["Hello from the fake backend."]
    assert turn_completed(events)
    got = backend.received[-1]
    body = got.json
    assert body["model"] == "gpt-5.5" and body["store"] is False and body["stream"] is True
    assert got.headers["authorization"].startswith("Bearer ") and "sk-local" not in got.headers["authorization"]
    assert got.headers.get("session-id") or got.headers.get("session_id")


def _codex_runs(proxy, tmp_path, name, *prompts):
    """`codex exec` then `codex exec resume --last` for each further prompt, with a provider called `name` and an
    auto-compaction limit so low that the second turn compacts the first."""
    common = ["-m", "gpt-5.5", *provider_args(proxy.base_url, name), "-c", "model_auto_compact_token_limit=30"]
    for n, prompt in enumerate(prompts):
        assert turn_completed(codex_exec(tmp_path, *common, prompt, resume=n > 0))


def test_codex_cli_compacts_remotely_when_the_provider_is_named_OpenAI(proxy, backend, tmp_path):
    """Codex CLI 0.169.0 uses remote compaction (v2: a trigger item, one compaction item back) only for a
    provider whose `name` is exactly "OpenAI"; the compaction item then travels in the next turn's input."""
    _codex_runs(proxy, tmp_path, "OpenAI", "Remember 7", "What was the number?")
    inputs = [r.json["input"] for r in backend.received if r.path.endswith(PATH)]
    assert len(inputs) == 3
    assert inputs[1][-1] == {"type": "compaction_trigger"}
    assert [i["encrypted_content"] for i in inputs[2] if i.get("type") == "compaction"] == ["gAAAAABfakeCompactedHistory=="]


def test_codex_cli_compacts_locally_for_other_provider_names(proxy, backend, tmp_path):
    _codex_runs(proxy, tmp_path, "openai", "Remember 7", "What was the number?")  # case matters
    inputs = [r.json["input"] for r in backend.received if r.path.endswith(PATH)]
    assert len(inputs) == 3 and not any(i.get("type", "").startswith("compaction") for items in inputs for i in items)
    assert "CONTEXT CHECKPOINT COMPACTION" in json.dumps(inputs[1][-1])  # a summary written by the model instead


def run_codex(proxy, tmp_path, prompt, *model):
    return codex_exec(tmp_path, *model, *provider_args(proxy.base_url), prompt)


def assert_cli_identity(headers):
    """The CLI's own identity and Codex headers reach the backend as it sent them."""
    assert headers["originator"] == "codex_exec" and headers["version"] == "0.169.0"
    assert headers["user-agent"].startswith("codex_exec/0.169.0 (") and "cliproxy" not in headers["user-agent"]
    assert headers["session-id"] == headers["thread-id"] == headers["x-client-request-id"]
    assert headers["x-codex-beta-features"] and headers["x-codex-window-id"] and headers["x-codex-turn-metadata"]


def test_codex_default_lite_model_with_a_tool_turn(proxy, backend, tmp_path):
    # the CLI's default model speaks Responses Lite; its code-mode tool `exec` runs JavaScript
    backend.replies.append(sse(turn("gpt-6.1-sol").custom_call("exec", 'text("tool ran: " + (6 * 7))', call_id="call_x").events()))
    backend.replies.append(sse(turn("gpt-6.1-sol", "resp_2").text("Done.").events()))
    events = run_codex(proxy, tmp_path, "Compute")
    assert agent_messages(events) == ["Done."]
    first, second = backend.received[-2:]
    for got in (first, second):
        body = got.json
        assert got.headers[LITE_HEADER] == "true" and body["model"] == "gpt-6.1-sol"
        assert "instructions" not in body and "tools" not in body  # nothing added; the fake refuses them for lite models
        assert body["input"][0]["type"] == "additional_tools" and body["input"][0]["id"].startswith("at_")
        assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
        assert body["reasoning"]["context"] == "all_turns" and "summary" not in body["reasoning"]
        assert body["client_metadata"]["turn_id"] and body["text"] == {"verbosity": "low"}
        assert all(i.get("id") for i in body["input"] if i["type"] == "message")
        assert_cli_identity(got.headers)
    call, output = second.json["input"][-2:]
    assert (call["type"], call["name"], call["call_id"]) == ("custom_tool_call", "exec", "call_x")  # plain name, as answered
    assert output["type"] == "custom_tool_call_output" and "tool ran: 42" in json.dumps(output["output"])


@pytest.mark.parametrize("model", ["gpt-5.5", "gpt-5.6-terra"])
def test_codex_classic_and_catalog_lite_models(proxy, backend, tmp_path, model):
    backend.replies.append(sse(turn(model).text("Hi.").events()))
    events = run_codex(proxy, tmp_path, "Say hi", "-m", model)
    assert turn_completed(events)
    got = backend.received[-1]
    body = got.json
    assert "instructions" not in body and "summary" not in body["reasoning"]
    if model == "gpt-5.5":  # classic: tools at the top, parallel calls on, no lite header
        assert LITE_HEADER not in got.headers and body["tools"] and body["parallel_tool_calls"] is True
    else:
        assert got.headers[LITE_HEADER] == "true" and "tools" not in body and body["input"][0]["type"] == "additional_tools"
    assert_cli_identity(got.headers)
