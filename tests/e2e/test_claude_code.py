"""The real Claude Code (`claude -p`) through the proxy by base URL."""

import json
import subprocess

from tests.fakes.codex_backend import sse, turn
from tests.npmtools import npm_tool

SIG = "gAAAAABclaudeCodeReplay-0123456789abcdef=="


def claude(proxy, tmp_path, prompt, *args, https_proxy=False):
    """Run `claude -p` (isolated HOME) by base URL, or through HTTPS_PROXY against api.anthropic.com."""
    exe = npm_tool("@anthropic-ai/claude-code", "claude")
    (tmp_path / "home").mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(tmp_path / "home"),
        "ANTHROPIC_API_KEY": "sk-local",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    if https_proxy:
        env.update(HTTPS_PROXY=proxy.proxy_url, NODE_EXTRA_CA_CERTS=proxy.ca)
    else:
        env["ANTHROPIC_BASE_URL"] = proxy.base_url
    result = subprocess.run(
        [str(exe), "-p", prompt, "--output-format", "stream-json", "--verbose", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def model_calls(backend):
    return [r.json for r in backend.received if r.path.endswith("/responses")]


def test_claude_code_answers_from_the_backend(proxy, backend, tmp_path):
    backend.replies.append(sse(turn().reasoning("Short plan.").text("Hello from the fake backend.").events()))
    out = claude(proxy, tmp_path, "Say hello")
    result = out[-1]
    assert result["type"] == "result" and result["subtype"] == "success" and not result["is_error"]
    assert result["result"] == "Hello from the fake backend."
    body = model_calls(backend)[-1]
    assert body["model"] == "gpt-6.1-sol" and body["reasoning"]["effort"] in ("high", "xhigh") and body["store"] is False
    assert body["input"][0]["role"] == "developer"
    assert body["input"][1]["role"] == "developer" and "x-anthropic-billing-header" not in json.dumps(body["input"][:2])
    assert "tools" not in body and body["input"][0]["type"] == "additional_tools"  # gpt-6.1-sol speaks Responses Lite
    names = {t.get("name") for ns in body["input"][0]["tools"] for t in ns.get("tools", [ns])}
    assert {"Bash", "Read", "Edit"} <= names


def test_claude_code_tool_round_trip_replays_reasoning(proxy, backend, tmp_path):
    (tmp_path / "note.txt").write_text("the secret word is pineapple\n")
    backend.replies.append(
        sse(
            turn()
            .reasoning("I should read the file.", encrypted=SIG)
            .tool_call("Read", {"file_path": str(tmp_path / "note.txt")}, call_id="call_read1")
            .events()
        )
    )
    backend.replies.append(sse(turn().text("The secret word is pineapple.").events()))
    out = claude(proxy, tmp_path, "What is the secret word in note.txt?")
    assert out[-1]["result"] == "The secret word is pineapple."
    calls = model_calls(backend)
    follow_up = calls[-1]["input"]
    outputs = [i for i in follow_up if i["type"] == "function_call_output" and i["call_id"] == "call_read1"]
    assert outputs and "pineapple" in json.dumps(outputs[0]["output"])
    assert {"type": "reasoning", "summary": [], "encrypted_content": SIG} in follow_up
    kinds = [i["type"] for i in follow_up]
    assert kinds.index("reasoning") < kinds.index("function_call") < kinds.index("function_call_output")


def test_claude_code_through_https_proxy(proxy, backend, tmp_path):
    backend.replies.append(sse(turn().text("Hello over TLS.").events()))
    out = claude(proxy, tmp_path, "Say hello", "--model", "haiku", https_proxy=True)
    assert out[-1]["result"] == "Hello over TLS."
    assert model_calls(backend)[-1]["model"] == "gpt-6-luna"
