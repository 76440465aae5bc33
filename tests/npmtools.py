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
    "@ampcode/cli": "0.0.1790142911-g7618fb",  # the newest with a linux-x64 binary
    "ai": "7.0.173",  # the Vercel AI SDK and its OpenAI provider, for scripts run by node
    "@ai-sdk/openai": "4.0.118",
    "playwright-core": "1.65.1",  # drives Debian's chromium (no browser download) for the mitmweb e2e test
}


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


def npm_modules(*packages: str) -> Path:
    """The cache's node_modules with `packages` (pinned) installed, for node scripts that import them.

    Node resolves an ES module's imports from the script's own folder, so a test links this folder
    beside its copy of the script. Skips and fails as `npm_tool` does.
    """
    if shutil.which("npm") is None:
        pytest.skip(f"npm is not installed, so {', '.join(packages)} cannot be run end to end")
    modules = CACHE / "node_modules"
    missing = [p for p in packages if _installed(modules / p) != PINS[p]]
    if missing:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), *(f"{p}@{PINS[p]}" for p in missing)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return modules


def _installed(package_dir: Path) -> str | None:
    """The installed version of the package in `package_dir`, or None."""
    try:
        return json.loads((package_dir / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None
