"""Pooling for the official Codex CLI: its own ChatGPT token, sent to chatgpt.com through HTTPS_PROXY,
is swapped for a pool account when `codex-cli-pooling` is on.

The real CLI runs against a fake chatgpt.com: `tests/fakes/chatgpt_dns.py` sends the chatgpt.com
paths cliproxy leaves alone (workspace discovery, which the CLI needs before a turn; model list;
plugins) to the fake backend. The other tests make the CLI's request with httpx, exactly as Codex
CLI 0.169 sends it (headers and body keys as observed from the real CLI in a recording proxy).
"""

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.codexcli import agent_messages, codex_exec
from tests.conftest import ACCOUNT_ID
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import LITE_HEADER, PATH, JSONReply, sse, turn, workspace_discovery
from tests.proxyproc import start_proxy

CHATGPT_DNS = Path(__file__).resolve().parents[1] / "fakes" / "chatgpt_dns.py"

OWN_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJjbGkiOiJvd24ifQ.c2lnbmF0dXJl"
BODY = {
    "model": "gpt-5.5",
    "instructions": "You are Codex.",
    "store": False,
    "stream": True,
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199-thread",
    "client_metadata": {"x-codex-installation-id": "i-1"},
}
HEADERS = {
    "authorization": f"Bearer {OWN_TOKEN}",
    "chatgpt-account-id": "acct-cli-own",
    "originator": "codex_exec",
    "session-id": "0199-thread",
    "x-codex-turn-metadata": "{}",
    "accept": "text/event-stream",
    "user-agent": "codex_exec/0.169.0 (Linux; x86_64)",
}


def cli_client(proxy):
    return httpx.Client(proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30)


@pytest.fixture
def start(tmp_path, proxy_home, backend_server):
    started = []

    def run(pooling: bool, *extra: str, env: dict | None = None, websocket: bool = True):
        p = start_proxy(
            tmp_path / f"p{len(started)}",
            {
                "auth-dir": str(proxy_home / "auth"),
                "codex-base-url": backend_server.base_url,
                "oauth-issuer": "http://127.0.0.1:9",
                "codex-cli-pooling": pooling,
                "responses-websocket": websocket,
            },
            *extra,
            env=env,
        )
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


def codex_login(codex_home: Path) -> str:
    """A Codex CLI ChatGPT login of its own (`~/.codex/auth.json`); returns its access token."""
    own = json.loads(mint_account(codex_home / "minted", "own@example.com", "acct-cli-own").read_text())
    tokens = {k: own[k] for k in ("id_token", "access_token", "refresh_token")} | {"account_id": "acct-cli-own"}
    (codex_home / "auth.json").write_text(
        json.dumps({"OPENAI_API_KEY": None, "tokens": tokens, "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    )
    return own["access_token"]


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "http"])
def test_real_codex_cli_is_pooled(start, backend_server, backend, tmp_path, websocket):
    proxy = start(
        True, "-s", str(CHATGPT_DNS), env={"CLIPROXY_TEST_CHATGPT": f"http://127.0.0.1:{backend_server.port}"}, websocket=websocket
    )
    backend.pages = {
        "/backend-api/wham/accounts/check": workspace_discovery("acct-cli-own"),
        "/backend-api/codex/models": JSONReply(200, {"models": []}),
    }
    backend.replies.append(sse(turn().text("Pooled hello.").events()))
    backend.ws_replies.append(turn().text("Pooled hello.").events(empty_output=False))
    own_token = codex_login(tmp_path / "codex")
    started = time.monotonic()
    events = codex_exec(tmp_path, "-m", "gpt-5.5", "Say hello", env={"HTTPS_PROXY": proxy.proxy_url, "CODEX_CA_CERTIFICATE": proxy.ca})
    assert agent_messages(events) == ["Pooled hello."]
    turns = [r for r in backend.received if r.path == PATH]
    # over its WebSocket with a pool account, or (switched off) refused with 426 so the turn came over HTTP
    assert [r.method for r in turns] == (["GET"] if websocket else ["POST"])
    assert turns[0].headers["chatgpt-account-id"] == ACCOUNT_ID and own_token not in turns[0].headers["authorization"]
    assert ("GET", "/backend-api/wham/accounts/check") in [(r.method, r.path) for r in backend.received]  # its own calls still work
    assert time.monotonic() - started < 30  # no WebSocket retry loop before the fallback
    assert own_token not in proxy.log


def test_real_codex_cli_default_lite_model_is_pooled_faithfully(start, backend_server, backend, tmp_path):
    # over HTTP (its zstd-compressed body is the point here; the WebSocket path has its own tests)
    proxy = start(True, "-s", str(CHATGPT_DNS), env={"CLIPROXY_TEST_CHATGPT": f"http://127.0.0.1:{backend_server.port}"}, websocket=False)
    backend.pages = {
        "/backend-api/wham/accounts/check": workspace_discovery("acct-cli-own"),
        "/backend-api/codex/models": JSONReply(200, {"models": []}),
    }
    backend.replies.append(sse(turn("gpt-6.1-sol").text("Pooled lite hello.").events()))
    own_token = codex_login(tmp_path / "codex")
    events = codex_exec(tmp_path, "Say hello", env={"HTTPS_PROXY": proxy.proxy_url, "CODEX_CA_CERTIFICATE": proxy.ca})
    assert agent_messages(events) == ["Pooled lite hello."]
    [got] = [r for r in backend.received if r.path == PATH]
    assert got.headers["chatgpt-account-id"] == ACCOUNT_ID and own_token not in got.headers["authorization"]
    assert got.headers[LITE_HEADER] == "true" and got.headers["originator"] == "codex_exec"
    assert got.headers["user-agent"].startswith("codex_exec/0.169.0 (") and got.headers["version"] == "0.169.0"
    assert "content-encoding" not in got.headers  # the CLI's zstd body was decoded
    body = got.json
    assert body["model"] == "gpt-6.1-sol" and "instructions" not in body and "tools" not in body
    assert body["input"][0]["type"] == "additional_tools"
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False and body["reasoning"]["context"] == "all_turns"
    assert body["client_metadata"] and body["prompt_cache_key"] == got.headers["session-id"]
