"""The Amp module through the real proxy: local serving with mappings, the Amp upstream, credentials, reload.

Every proxy here has its own config (the session proxy's is never changed); ampcode.com is a local fake.
"""

from __future__ import annotations

import json
import socket
import ssl

import anthropic
import httpx
import openai
import pytest

from tests.fakes.ampcode import TEXT, FakeAmpcode, ws_frame, ws_read
from tests.fakes.codex_backend import sse, turn
from tests.proxyproc import free_port, start_proxy

AMP_KEY = "sgamp_proxy_side_0001"
TEAM_AMP_KEY = "sgamp_team_side_0002"
CLIENT_KEY = "sk-amp-client"
TEAM_CLIENT_KEY = "sk-amp-team-client"
MAPPINGS = [
    {"from": "claude-sonnet-4-5", "to": "gpt-5.5"},
    {"from": "^claude-haiku", "to": "gpt-6-luna", "regex": True},
    {"from": "claude-lite-4-7", "to": "gpt-5.6-sol"},
]


def config(proxy_home, backend_server, upstream: str | None, **ampcode) -> dict:
    block = {
        "upstream-api-key": AMP_KEY,
        "model-mappings": MAPPINGS,
        "upstream-api-keys": [{"upstream-api-key": TEAM_AMP_KEY, "api-keys": [TEAM_CLIENT_KEY]}],
        **ampcode,
    }
    if upstream:
        block["upstream-url"] = upstream
    return {
        "auth-dir": str(proxy_home / "auth"),
        "codex-base-url": backend_server.base_url,
        "oauth-issuer": "http://127.0.0.1:9",
        "api-keys": [CLIENT_KEY, TEAM_CLIENT_KEY],
        "ampcode": block,
    }


@pytest.fixture(scope="module")
def ampcode_server():
    with FakeAmpcode() as fake:
        yield fake


@pytest.fixture
def ampcode(ampcode_server: FakeAmpcode) -> FakeAmpcode:
    ampcode_server.received.clear()
    ampcode_server.hidden_gzip = False
    return ampcode_server


@pytest.fixture(scope="module")
def amp_proxy(tmp_path_factory, proxy_home, backend_server, ampcode_server):
    p = start_proxy(tmp_path_factory.mktemp("amp"), config(proxy_home, backend_server, ampcode_server.base_url))
    yield p
    p.stop()
    assert AMP_KEY not in p.log and TEAM_AMP_KEY not in p.log  # the Amp key is never logged


@pytest.fixture
def client(amp_proxy, mode):
    """Amp's view: the proxy as AMP_URL, or ampcode.com itself through HTTPS_PROXY (client trusts the proxy CA)."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    if mode == "base_url":
        c = httpx.Client(base_url=amp_proxy.base_url, headers=headers, timeout=30)
    else:
        c = httpx.Client(
            base_url="https://ampcode.com",
            proxy=amp_proxy.proxy_url,
            verify=ssl.create_default_context(cafile=amp_proxy.ca),
            headers=headers,
            timeout=30,
        )
    with c:
        yield c


def no_client_credentials(headers: dict[str, str]) -> None:
    assert not any(CLIENT_KEY in v or TEAM_CLIENT_KEY in v for v in headers.values())


# -- provider calls served locally --------------------------------------------------------------


def test_openai_provider_call_mapped_and_served_locally(client, backend, ampcode):
    r = client.post(
        "/api/provider/openai/v1/chat/completions",
        json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi there"}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "claude-sonnet-4-5"  # the client sees its own model name
    assert body["choices"][0]["message"]["content"] == "You said: hi there"
    got = backend.received[-1]
    assert got.json["model"] == "gpt-5.5"
    assert AMP_KEY not in json.dumps(got.headers) and CLIENT_KEY not in json.dumps(got.headers)
    assert not [x for x in ampcode.received if x.path.startswith("/api/provider")]


def test_openai_sdk_stream_through_the_provider_alias(amp_proxy, backend, ampcode):
    backend.replies.append(sse(turn().text("streamed locally").events()))
    oc = openai.OpenAI(base_url=amp_proxy.base_url + "/api/provider/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    chunks = list(oc.chat.completions.create(model="gpt-5.5(high)", messages=[{"role": "user", "content": "x"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed locally"
    assert {c.model for c in chunks} == {"gpt-5.5(high)"}
    sent = backend.received[-1].json
    assert sent["model"] == "gpt-5.5" and sent["reasoning"]["effort"] == "high"
    assert ampcode.received == []


def test_responses_provider_call_restores_the_model(client, backend):
    backend.replies.append(sse(turn().text("from responses").events(empty_output=True)))
    r = client.post("/api/provider/openai/v1/responses", json={"model": "claude-haiku-4-5-20251001", "input": "q"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "claude-haiku-4-5-20251001" and r.json()["output"][-1]["content"][0]["text"] == "from responses"
    assert backend.received[-1].json["model"] == "gpt-6-luna"  # regex mapping


def test_anthropic_provider_call_mapped_with_amp_fixups(amp_proxy, backend, ampcode):
    backend.replies.append(sse(turn().reasoning("Plan.").tool_call("bash", {"cmd": "ls"}, call_id="call_1").events()))
    ac = anthropic.Anthropic(base_url=amp_proxy.base_url + "/api/provider/anthropic", api_key=CLIENT_KEY, max_retries=0)
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
    history = [
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "old", "signature": ""},
                {"type": "tool_use", "id": "toolu_0", "name": "Bash", "input": {"cmd": "pwd"}, "signature": ""},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "/root"}]},
    ]
    with ac.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=history,
        tools=tools,
        thinking={"type": "enabled", "budget_tokens": 2000},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07,interleaved-thinking-2025-05-14"},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.model == "claude-sonnet-4-5"
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "Bash" and tool.input == {"cmd": "ls"}  # casing restored from the request's tools
    starts = [e for e in events if e.type == "content_block_start"]
    assert all(getattr(e.content_block, "signature", None) is not None for e in starts if e.content_block.type in ("thinking", "tool_use"))
    assert any(e.content_block.type == "thinking" for e in starts)  # thinking is never dropped from streams
    sent = backend.received[-1].json
    assert sent["model"] == "gpt-5.5"
    assert ampcode.received == []


def test_anthropic_provider_call_on_a_lite_model(amp_proxy, backend, ampcode):
    backend.replies.append(sse(turn("gpt-5.6-sol").tool_call("bash", {"cmd": "ls"}, call_id="call_l").events()))
    ac = anthropic.Anthropic(base_url=amp_proxy.base_url + "/api/provider/anthropic", api_key=CLIENT_KEY, max_retries=0)
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
    msg = ac.messages.create(
        model="claude-lite-4-7", max_tokens=100, system="You are Amp.", tools=tools, messages=[{"role": "user", "content": "list files"}]
    )
    tool = next(b for b in msg.content if b.type == "tool_use")
    assert msg.model == "claude-lite-4-7" and tool.name == "Bash" and tool.input == {"cmd": "ls"}
    got = backend.received[-1]
    sent = got.json
    assert sent["model"] == "gpt-5.6-sol" and got.headers["x-openai-internal-codex-responses-lite"] == "true"
    assert "tools" not in sent and "instructions" not in sent
    assert sent["input"][0]["tools"][0]["tools"][0]["name"] == "Bash" and sent["input"][1]["role"] == "developer"
    assert ampcode.received == []


def test_anthropic_non_stream_and_count_tokens(client, backend):
    backend.replies.append(sse(turn().text("plain answer").events()))
    r = client.post(
        "/api/provider/anthropic/v1/messages?beta=true",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hey"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "claude-haiku-4-5" and r.json()["content"][0]["text"] == "plain answer"
    r = client.post(
        "/api/provider/anthropic/v1/messages/count_tokens",
        json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "count me"}]},
    )
    assert r.status_code == 200 and r.json()["input_tokens"] > 0


def test_provider_model_lists_are_local(client, ampcode):
    anth = client.get("/api/provider/anthropic/v1/models").json()
    assert anth["has_more"] is False and "gpt-5.5" in [m["id"] for m in anth["data"]]
    oai = client.get("/api/provider/openai/models").json()
    assert oai["object"] == "list" and "gpt-5.5" in [m["id"] for m in oai["data"]]
    gem = client.get("/api/provider/google/v1beta/models").json()
    assert "models/gpt-5.5" in [m["name"] for m in gem["models"]]
    assert ampcode.received == []


def test_unknown_provider_path_is_a_client_format_404(client, ampcode):
    r = client.post("/api/provider/anthropic/v1/embeddings", json={"model": "x"})
    assert r.status_code == 404 and r.json()["type"] == "error"
    r = client.post("/api/provider/openai/v1/embeddings", json={"model": "x"})
    assert r.status_code == 404 and "error" in r.json()
    assert ampcode.received == []


# -- the Amp upstream -----------------------------------------------------------------------------


def test_unmapped_model_goes_to_ampcode_with_the_amp_key(client, amp_proxy, backend, ampcode):
    mark = len(amp_proxy.lines)
    r = client.post(
        "/api/provider/anthropic/v1/messages?key=" + CLIENT_KEY + "&key=keep",
        headers={"anthropic-beta": "context-1m-2025-08-07", "x-forwarded-for": "10.9.9.9", "x-api-key": CLIENT_KEY},
        json={
            "model": "claude-opus-4-6",
            "max_tokens": 9,
            "messages": [
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": ""}]},
                {"role": "user", "content": "hi"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == TEXT and r.json()["model"] == "claude-opus-4-6"
    got = ampcode.last("/api/provider/")
    assert got.path == "/api/provider/anthropic/v1/messages" and got.raw_query == "key=keep"
    assert got.headers["x-api-key"] == AMP_KEY and got.headers["authorization"] == f"Bearer {AMP_KEY}"
    assert got.headers["anthropic-beta"] == "context-1m-2025-08-07"  # kept on the upstream path
    assert "x-forwarded-for" not in got.headers and got.headers["accept-encoding"] == "identity"
    no_client_credentials(got.headers)
    assert got.json["messages"][0]["content"] == []  # sanitised: unsigned thinking dropped
    assert backend.received == []
    line = amp_proxy.wait_log("AMP_CREDITS", start=mark)
    assert "claude-opus-4-6" in line and 'ampcode.model-mappings: [{from: "claude-opus-4-6"' in line


def test_upstream_stream_passes_through(client, ampcode):
    with client.stream(
        "POST",
        "/api/provider/openai/v1/chat/completions",
        json={"model": "some-amp-only-model", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and json.loads(lines[0][6:])["choices"][0]["delta"]["content"] == TEXT


def test_per_client_amp_key(amp_proxy, ampcode):
    with httpx.Client(base_url=amp_proxy.base_url, timeout=30) as c:
        r = c.post("/api/internal?getUserInfo", headers={"x-api-key": TEAM_CLIENT_KEY}, json={"method": "getUserInfo", "params": {}})
    assert r.status_code == 200
    got = ampcode.last("/api/internal")
    assert got.headers["authorization"] == f"Bearer {TEAM_AMP_KEY}" and got.headers["x-api-key"] == TEAM_AMP_KEY


def test_management_rpc_is_proxied(client, ampcode):
    r = client.post(
        "/api/internal?getUserInfo",
        json={"method": "getUserInfo", "params": {}},
        headers={"x-amp-client-application": "CLI", "x-stainless-os": "Linux", "accept-encoding": "gzip"},
    )
    assert r.status_code == 200 and r.json()["result"]["email"] == "amp-user@example.com"
    got = ampcode.last("/api/internal")
    assert got.method == "POST" and got.raw_query == "getUserInfo" and got.json == {"method": "getUserInfo", "params": {}}
    assert got.headers["host"] == f"127.0.0.1:{ampcode.port}"
    assert got.headers["x-amp-client-application"] == "CLI" and "x-stainless-os" not in got.headers
    assert got.headers["authorization"] == f"Bearer {AMP_KEY}"
    no_client_credentials(got.headers)


@pytest.mark.parametrize(
    "path,kind",
    [
        ("/threads/T-1234", "text/html"),
        ("/auth/cli-login?authToken=x", "text/html"),
        ("/news.rss", "application/rss+xml"),
        ("/settings", "text/html"),
    ],
)
def test_browser_pages_are_proxied(client, ampcode, path, kind):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert ampcode.received[-1].path == path.split("?")[0]


def open_socket(amp_proxy, mode: str) -> socket.socket:
    """A raw connection to ampcode.com as Amp opens it: to the base URL, or through HTTPS_PROXY with TLS."""
    if mode == "base_url":
        return socket.create_connection(("127.0.0.1", amp_proxy.base_port), timeout=10)
    sock = socket.create_connection(("127.0.0.1", amp_proxy.regular_port), timeout=10)
    sock.sendall(b"CONNECT ampcode.com:443 HTTP/1.1\r\nHost: ampcode.com:443\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return ssl.create_default_context(cafile=amp_proxy.ca).wrap_socket(sock, server_hostname="ampcode.com")


def test_thread_actor_websocket_is_proxied(amp_proxy, mode, ampcode):
    """The Amp CLI runs its agent loop over a WebSocket to /actors/…: it must reach the Amp upstream."""
    sock = open_socket(amp_proxy, mode)
    with sock:
        sock.sendall(
            (
                "GET /actors/gateway/threadActor/websocket/?rvt-namespace=default&rvt-key=T-1 HTTP/1.1\r\n"
                "Host: ampcode.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: rivet, rivet_encoding.bare\r\n"
                f"Authorization: Bearer {CLIENT_KEY}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # the upstream's accept for that key
        sock.sendall(ws_frame(0x1, b"hello actor", mask=True))
        assert ws_read(sock) == (0x1, b"echo: hello actor")
    got = ampcode.last("/actors/")
    assert got.query == [("rvt-namespace", "default"), ("rvt-key", "T-1")]
    assert got.headers["authorization"] == f"Bearer {AMP_KEY}" and got.headers["sec-websocket-protocol"] == "rivet, rivet_encoding.bare"
    no_client_credentials(got.headers)


def test_sse_management_stream(client, ampcode):
    with client.stream("GET", "/api/test/sse") as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_hidden_gzip_is_repaired(client, ampcode):
    r = client.get("/api/test/hidden-gzip")
    assert r.json() == {"hidden": "gzip", "ok": True} and "content-encoding" not in r.headers
    ampcode.hidden_gzip = True
    r = client.post("/api/internal?getUserInfo", json={"method": "getUserInfo", "params": {}})
    assert r.json()["ok"] is True
    assert ampcode.received[-1].path == "/api/internal"


def test_remote_client_needs_a_client_key(amp_proxy):
    # Loopback peers are always served; the localhost rule for remote peers is tested in-process
    # (tests/unit/test_amp_addon.py), since every test client here is on 127.0.0.1.
    with httpx.Client(base_url=amp_proxy.base_url, timeout=30) as c:
        assert c.post("/api/internal?getUserInfo", json={"method": "getUserInfo"}).status_code == 200


# -- configuration changes without a restart --------------------------------------------------------


def test_hot_reload_of_upstream_and_mappings(tmp_path, proxy_home, backend_server, backend, ampcode):
    cfg = config(proxy_home, backend_server, None)
    proxy = start_proxy(tmp_path / "p", cfg)
    try:
        c = httpx.Client(base_url=proxy.base_url, timeout=30)
        # no upstream: control plane 503 in Amp's shape; an unmapped model is a client-format error
        r = c.post("/api/internal?getUserInfo", json={"method": "getUserInfo"})
        assert r.status_code == 503 and r.json() == {"error": "amp upstream proxy not available"}
        r = c.post(
            "/api/provider/anthropic/v1/messages",
            json={"model": "claude-opus-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 404 and r.json()["type"] == "error" and "ampcode.model-mappings" in r.json()["error"]["message"]
        chat = {"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "x"}]}
        assert c.post("/api/provider/openai/v1/chat/completions", json=chat).json()["error"]["code"] == "model_not_found"

        # mappings: applied on the next request
        proxy.write_config(
            {**cfg, "ampcode": {**cfg["ampcode"], "model-mappings": [{"from": "claude-opus-4-6", "to": "gpt-6-sol"}]}}, wait_for="loaded"
        )
        r = c.post("/api/provider/openai/v1/chat/completions", json=chat)
        assert r.status_code == 200 and r.json()["model"] == "claude-opus-4-6" and backend.received[-1].json["model"] == "gpt-6-sol"

        # upstream URL set, then changed to another fake, then to a closed port
        proxy.write_config({**cfg, "ampcode": {**cfg["ampcode"], "upstream-url": ampcode.base_url}}, wait_for="loaded")
        assert c.post("/api/internal?getUserInfo", json={"method": "getUserInfo"}).status_code == 200
        assert ampcode.received[-1].path == "/api/internal"
        r = c.post("/api/provider/openai/v1/chat/completions", json=chat)
        assert r.json()["choices"][0]["message"]["content"] == TEXT  # the mapping went with the config edit
        with FakeAmpcode() as other:
            proxy.write_config({**cfg, "ampcode": {**cfg["ampcode"], "upstream-url": other.base_url + "/"}}, wait_for="loaded")
            assert c.post("/api/internal?getUserInfo", json={"method": "getUserInfo"}).status_code == 200
            assert other.received[-1].headers["authorization"] == f"Bearer {AMP_KEY}"
        proxy.write_config({**cfg, "ampcode": {**cfg["ampcode"], "upstream-url": f"http://127.0.0.1:{free_port()}"}}, wait_for="loaded")
        r = c.post("/api/internal?getUserInfo", json={"method": "getUserInfo"})
        assert r.status_code == 502 and r.json() == {"error": "amp_upstream_proxy_error", "message": "Failed to reach Amp upstream"}
        assert r.headers["content-type"] == "application/json"
        c.close()
    finally:
        proxy.stop()
    assert AMP_KEY not in proxy.log


def test_force_mode_and_client_key_fallback(tmp_path, proxy_home, backend_server, backend, ampcode, monkeypatch):
    cfg = config(
        proxy_home,
        backend_server,
        ampcode.base_url,
        **{"force-model-mappings": True, "model-mappings": [{"from": "gpt-5.5", "to": "gpt-6-luna"}]},
    )
    del cfg["ampcode"]["upstream-api-key"]
    cfg.pop("api-keys")
    proxy = start_proxy(tmp_path / "p", cfg, env={"AMP_API_KEY": ""})
    try:
        with httpx.Client(base_url=proxy.base_url, timeout=30) as c:
            r = c.post(
                "/api/provider/openai/v1/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "x"}]}
            )
            assert r.json()["model"] == "gpt-5.5" and backend.received[-1].json["model"] == "gpt-6-luna"  # mapping beats the local model
            # no Amp key anywhere on the proxy: the client's own (Amp) key goes to the Amp upstream
            c.post("/api/internal?getUserInfo", headers={"authorization": "Bearer sgamp_users_own"}, json={"method": "getUserInfo"})
            assert ampcode.last("/api/internal").headers["x-api-key"] == "sgamp_users_own"
    finally:
        proxy.stop()
