"""The official Codex CLI (`codex exec`) through the proxy, with a custom Responses provider."""

import json
import subprocess

from tests.fakes.codex_backend import PATH, sse, turn
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


def _codex_runs(proxy, tmp_path, name, *prompts):
    """`codex exec` then `codex exec resume --last` for each further prompt, with a provider called `name` and an
    auto-compaction limit so low that the second turn compacts the first."""
    codex = npm_tool("@openai/codex", "codex")
    (tmp_path / "codex").mkdir(exist_ok=True)
    provider = (f'model_providers.cliproxy={{name="{name}",base_url="{proxy.base_url}/v1",'
                'env_key="CLIPROXY_KEY",wire_api="responses"}')
    common = ["--json", "--skip-git-repo-check", "-m", "gpt-5.5", "-c", "model_provider=cliproxy", "-c", provider,
              "-c", "model_auto_compact_token_limit=30"]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path), "CODEX_HOME": str(tmp_path / "codex"), "CLIPROXY_KEY": "sk-local"}
    for n, prompt in enumerate(prompts):
        args = ["exec", *common, prompt] if n == 0 else ["exec", "resume", "--last", *common, prompt]
        result = subprocess.run([str(codex), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert any(json.loads(line).get("type") == "turn.completed" for line in result.stdout.splitlines() if line.startswith("{"))


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
