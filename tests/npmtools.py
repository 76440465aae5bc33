"""Real client programs from npm (Codex CLI, Claude Code), cached outside the repo between runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("CLIPROXY_NPM_CACHE", Path.home() / ".cache" / "cliproxy-npm"))
PINS = {
    "@openai/codex": "0.169.0",
    "@anthropic-ai/claude-code": "2.1.197",
    "@ampcode/cli": "0.0.1790142911-g7618fb",
}  # the newest with a linux-x64 binary


def npm_tool(package: str, binary: str) -> Path:
    """Path of `binary` from `package` (pinned), installing it into the cache when missing.

    Skips the test only when npm itself is unavailable; a failing install is a test failure.
    """
    if shutil.which("npm") is None:
        pytest.skip(f"npm is not installed, so {package} cannot be run end to end")
    path = CACHE / "node_modules" / ".bin" / binary
    manifest = CACHE / "node_modules" / package / "package.json"
    version = PINS[package]
    if not path.exists() or json.loads(manifest.read_text()).get("version") != version:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), f"{package}@{version}"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return path
