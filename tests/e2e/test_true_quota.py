"""True quota through the real proxy: a rest on a usage limit ends when wham/usage reports room, or by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import openai
import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes.accounts import ACCOUNT_ID, mint_account
from tests.fakes.codex_backend import WHAM_USAGE_PATH, usage_limit
from tests.proxyproc import start_proxy

CLI = [sys.executable, "-m", "cliproxy.scripts.cli"]


def proxy_with(tmp_path, backend, probe_seconds: float):
    mint_account(tmp_path / "auth")
    return start_proxy(
        tmp_path,
        {
            "auth-dir": str(tmp_path / "auth"),
            "codex-base-url": backend.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
            "quota-probe-seconds": probe_seconds,
        },
    )


def ask(client: openai.OpenAI) -> str:
    return client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content


def rest_on_usage_limit(client: openai.OpenAI, backend) -> None:
    backend.replies.append(usage_limit(resets_in=3600))
    with pytest.raises(openai.RateLimitError):
        ask(client)
    with pytest.raises(openai.RateLimitError) as exc:  # resting: not even sent upstream
        ask(client)
    assert exc.value.body["code"] == "model_cooldown"


def test_a_rest_ends_when_wham_usage_reports_room(tmp_path, backend):
    backend.wham_usage[ACCOUNT_ID] = 100.0
    proxy = proxy_with(tmp_path, backend, probe_seconds=1)
    try:
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        rest_on_usage_limit(client, backend)
        time.sleep(2.5)  # probes run, the window is still full: the rest holds
        probes = [r for r in backend.received if r.path == WHAM_USAGE_PATH]
        assert probes and all(r.headers["chatgpt-account-id"] == ACCOUNT_ID for r in probes)
        with pytest.raises(openai.RateLimitError):
            ask(client)
        backend.wham_usage[ACCOUNT_ID] = 35.0  # a banked reset credit was spent
        t = time.time()
        while True:
            try:
                assert ask(client) == "You said: hi"
                break
            except openai.RateLimitError:
                assert time.time() - t < 1 + 1.5, "not lifted within one probe interval"
                time.sleep(0.1)
        state = json.loads((tmp_path / "auth" / ".cliproxy-state").glob("*.json").__next__().read_text())
        assert state["quota"]["primary"]["used_percent"] == 35.0 and state["wham"]["reset_credits"] == 1 and state["wham"]["plan"] == "plus"
    finally:
        proxy.stop()


def test_rest_clear_is_honoured_by_a_running_proxy_at_once(tmp_path, backend):
    backend.wham_usage[ACCOUNT_ID] = 100.0
    proxy = proxy_with(tmp_path, backend, probe_seconds=300)
    try:
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        rest_on_usage_limit(client, backend)
        out = subprocess.run(
            [*CLI, "rest", "clear", "dev@example.com", "--auth-dir", str(tmp_path / "auth")], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert ask(client) == "You said: hi"  # the very next request
        assert not [r for r in backend.received if r.path == WHAM_USAGE_PATH]  # no probe was due
    finally:
        proxy.stop()


def test_accounts_probe_reads_the_live_windows(tmp_path, backend):
    mint_account(tmp_path / "auth")
    backend.wham_usage[ACCOUNT_ID] = 62.0
    (tmp_path / "config.yaml").write_text(f"auth-dir: {tmp_path / 'auth'}\ncodex-base-url: {backend.base_url}\n")
    out = subprocess.run(
        [*CLI, "--config", str(tmp_path / "config.yaml"), "accounts", "--probe"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "62%" in out.stdout and "resets in" in out.stdout
    assert [r.headers["chatgpt-account-id"] for r in backend.received if r.path == WHAM_USAGE_PATH] == [ACCOUNT_ID]


def test_rest_clear_of_an_unknown_account_is_a_clear_error(tmp_path):
    out = subprocess.run([*CLI, "rest", "clear", "nobody", "--auth-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no account 'nobody'" in out.stderr and "Traceback" not in out.stderr
