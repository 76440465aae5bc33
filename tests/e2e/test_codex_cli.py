"""The official Codex CLI (`codex exec`) through the proxy, with a custom Responses provider."""

import json
import subprocess

from tests.fakes.codex_backend import sse, turn
from tests.npmtools import npm_tool


def test_codex_exec_through_base_url(proxy, backend, tmp_path):
    codex = npm_tool("@openai/codex", "codex")
    (tmp_path / "codex").mkdir()
    backend.replies.append(sse(turn().reasoning("Short plan.").text("Hello from the fake backend.").events()))
    provider = (f'model_providers.cliproxy={{name="cliproxy",base_url="{proxy.base_url}/v1",'
                'env_key="CLIPROXY_KEY",wire_api="responses"}')
    result = subprocess.run(
        [str(codex), "exec", "--json", "--skip-git-repo-check", "-m", "gpt-5.5",
         "-c", "model_provider=cliproxy", "-c", provider, "Say hello"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path), "CODEX_HOME": str(tmp_path / "codex"),
             "CLIPROXY_KEY": "sk-local"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    messages = [e["item"].get("text") for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert messages == ["Hello from the fake backend."]
    assert any(e.get("type") == "turn.completed" for e in events)
    got = backend.received[-1]
    body = got.json
    assert body["model"] == "gpt-5.5" and body["store"] is False and body["stream"] is True
    assert got.headers["authorization"].startswith("Bearer ") and "sk-local" not in got.headers["authorization"]
    assert got.headers.get("session-id") or got.headers.get("session_id")
