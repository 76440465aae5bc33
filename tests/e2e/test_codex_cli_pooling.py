"""Pooling for the official Codex CLI: its own ChatGPT token, sent to chatgpt.com through HTTPS_PROXY,
is swapped for a pool account when `codex-cli-pooling` is on.

The request is made by httpx exactly as Codex CLI 0.169 sends it (headers and body keys observed in
clients.md §5.2). The real CLI cannot be used offline here: in ChatGPT mode it first runs a
"workspace routing discovery" against chatgpt.com/backend-api/wham/accounts/check and refuses to
start a turn without a real answer from that endpoint.
"""

import ssl

import httpx
import pytest

from tests.conftest import ACCOUNT_ID
from tests.fakes.codex_backend import sse, turn
from tests.proxyproc import start_proxy

OWN_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJjbGkiOiJvd24ifQ.c2lnbmF0dXJl"
BODY = {
    "model": "gpt-5.5", "instructions": "You are Codex.", "store": False, "stream": True,
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
    "tools": [], "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"},
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199-thread", "client_metadata": {"x-codex-installation-id": "i-1"},
}
HEADERS = {"authorization": f"Bearer {OWN_TOKEN}", "chatgpt-account-id": "acct-cli-own", "originator": "codex_exec",
           "session-id": "0199-thread", "x-codex-turn-metadata": "{}", "accept": "text/event-stream",
           "user-agent": "codex_exec/0.169.0 (Linux; x86_64)"}


def cli_client(proxy):
    return httpx.Client(proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30)


@pytest.fixture
def start(tmp_path, proxy_home, backend_server):
    started = []

    def run(pooling: bool):
        p = start_proxy(tmp_path / f"p{len(started)}", {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url,
                                                          "oauth-issuer": "http://127.0.0.1:9", "codex-cli-pooling": pooling})
        started.append(p)
        return p

    yield run
    for p in started:
        p.stop()


def test_codex_cli_token_is_swapped_for_a_pool_account(start, backend):
    proxy = start(pooling=True)
    backend.replies.append(sse(turn().text("Pooled hello.").events()))
    with cli_client(proxy) as c, c.stream("POST", "https://chatgpt.com/backend-api/codex/responses", json=BODY, headers=HEADERS) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    assert "event: response.output_text.delta" in body and "Pooled hello." in body
    got = backend.received[-1]
    assert got.headers["chatgpt-account-id"] == ACCOUNT_ID  # the pool's account, not the CLI's own
    assert OWN_TOKEN not in got.headers["authorization"]
    assert got.headers["session-id"] == "0199-thread" and got.headers["x-codex-turn-metadata"] == "{}"
    assert got.json["instructions"] == "You are Codex." and got.json["client_metadata"] == BODY["client_metadata"]
    assert OWN_TOKEN not in proxy.log


def test_without_the_switch_chatgpt_traffic_is_left_alone(start, backend):
    proxy = start(pooling=False)
    with cli_client(proxy) as c:
        r = c.post("https://chatgpt.com/backend-api/codex/responses", json=BODY, headers=HEADERS)
    # forwarded untouched to the real chatgpt.com, which this sandbox cannot reach
    assert r.status_code == 502 and backend.received == []
