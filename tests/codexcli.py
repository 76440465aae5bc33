"""Running the real Codex CLI (`codex exec --json`) in tests: one place for its command line and environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.npmtools import npm_tool


def provider_args(base_url: str, name: str = "cliproxy", websockets: bool = False) -> list[str]:
    """`-c` settings that send the CLI to `base_url` as a custom Responses provider keyed by CLIPROXY_KEY."""
    extra = ",supports_websockets=true" if websockets else ""
    provider = f'model_providers.cliproxy={{name="{name}",base_url="{base_url}/v1",env_key="CLIPROXY_KEY",wire_api="responses"{extra}}}'
    return ["-c", "model_provider=cliproxy", "-c", provider]


def codex_exec(home: Path, *args: str, env: dict[str, str] | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """`codex exec [resume --last] --json --skip-git-repo-check ARGS` with HOME and CODEX_HOME under `home`.

    Asserts that the CLI exits 0 and returns the JSON events it printed. The environment is minimal
    (no proxy settings leak in from the test run): the default is the key a custom provider reads.
    """
    codex = npm_tool("@openai/codex", "codex")
    (home / "codex").mkdir(exist_ok=True)
    command = [str(codex), "exec", *(["resume", "--last"] if resume else []), "--json", "--skip-git-repo-check", *args]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "HOME": str(home),
            "CODEX_HOME": str(home / "codex"),
            **(env if env is not None else {"CLIPROXY_KEY": "sk-local"}),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def agent_messages(events: list[dict[str, Any]]) -> list[str]:
    """The texts of the agent's messages, in order."""
    return [e["item"].get("text") for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]


def turn_completed(events: list[dict[str, Any]]) -> bool:
    return any(e.get("type") == "turn.completed" for e in events)
