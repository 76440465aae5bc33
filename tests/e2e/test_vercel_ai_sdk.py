"""The Vercel AI SDK's Responses provider (npm `ai` + `@ai-sdk/openai`, default settings) through a tool
loop against the real proxy. With its defaults the SDK refers to earlier output by id (`item_reference`),
which the backend, keeping nothing, answers with 404: the proxy must resolve them from its store."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes.codex_backend import Received, Reply, default_responder, sse, turn
from tests.npmtools import npm_modules

SCRIPT = Path(__file__).with_name("vercel_ai_tool_loop.mjs")


def run_script(tmp_path: Path, base_url: str, how: str) -> dict:
    """Run the SDK script with the pinned packages linked beside it; its one JSON line, parsed."""
    modules = npm_modules("ai", "@ai-sdk/openai")
    script = tmp_path / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    (tmp_path / "node_modules").symlink_to(modules, target_is_directory=True)
    result = subprocess.run(
        ["node", str(script), base_url, CLIENT_KEY, how],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def refusing_references(reply: Reply):
    """A queued reply that the fake gives only when no `item_reference` reached it; else the fake's own
    404 "Item with id ... not found", as the real backend answers (queued replies skip that check)."""

    def answer(req: Received) -> Reply:
        if any(isinstance(i, dict) and i.get("type") == "item_reference" for i in req.json.get("input", [])):
            return default_responder(req)
        return reply

    return answer


@pytest.mark.parametrize("how", ["generate", "stream"])
def test_tool_loop_with_item_references(proxy, backend, tmp_path, how):
    backend.replies.append(
        sse(turn().reasoning("Need the weather.").tool_call("get_weather", {"city": "Paris"}, call_id="call_v1").events())
    )
    backend.replies.append(refusing_references(sse(turn().text("It is sunny in Paris.").events())))
    out = run_script(tmp_path, proxy.base_url + "/v1", how)

    assert out["text"] == "It is sunny in Paris." and out["steps"] == 2 and out["finishReason"] == "stop"
    assert out["toolResults"] == ["sunny in Paris"]
    # The SDK's second request names its earlier reasoning and call by id only ...
    assert len(out["sent"]) == 2
    client_items = out["sent"][1]["input"]
    refs = [i["id"] for i in client_items if i.get("type") == "item_reference"]
    assert refs and any(r.startswith("rs_") for r in refs), client_items
    # ... and the backend got every one of them resolved into the full item, in place.
    assert len(backend.received) == 2
    upstream = backend.received[1].json["input"]
    assert not [i for i in upstream if i.get("type") == "item_reference"]
    kinds = [i.get("type") or i.get("role") for i in upstream]
    assert kinds == ["user", "reasoning", "function_call", "function_call_output"], kinds
    assert upstream[1]["encrypted_content"] == "gAAAAABfakeEncryptedReasoning=="
    assert upstream[2]["call_id"] == upstream[3]["call_id"] == "call_v1" and upstream[2]["name"] == "get_weather"
    assert json.loads(upstream[2]["arguments"]) == {"city": "Paris"} and upstream[3]["output"] == "sunny in Paris"
