"""Hostile input through the real proxy: header injection and smuggling toward the backend, text that
cannot be encoded, JSON nested past any sane depth. Raw sockets send what the SDKs refuse to."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess

import httpx
import pytest

from tests.proxyproc import Proxy

pytestmark = pytest.mark.e2e

SMUGGLE = "abc\r\n\r\nGET /backend-api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
INJECT = "abc\r\nx-injected: 1"
ROUTES = {
    "/v1/chat/completions": lambda content: {"model": "gpt-5.5", "messages": [{"role": "user", "content": content}]},
    "/v1/responses": lambda content: {"model": "gpt-5.5", "input": content},
    "/v1/messages": lambda content: {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": content}]},
    "/v1/messages/count_tokens": lambda content: {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": content}]},
}


def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request written byte for byte; the answer read until the connection closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(head.encode("latin-1") + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    head_bytes, _, payload = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode().split(": ", 1) for line in head_bytes.split(b"\r\n") if b": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, payload


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def post_head(path: str, body: bytes, extra: str = "") -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )


def openai_error(status: int, payload: bytes) -> dict:
    body = json.loads(payload)
    assert isinstance(body["error"]["message"], str) and body["error"]["type"] == "invalid_request_error", body
    return body["error"]


def nothing_smuggled(backend) -> None:
    for r in backend.received:
        assert "smuggled" not in r.path and "x-injected" not in r.headers and "host" not in (r.headers.get("session-id") or "").lower()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize("key", [SMUGGLE, INJECT, "tab\tand\x00nul", "bell\x07"])
def test_prompt_cache_key_with_control_characters_is_a_400(proxy: Proxy, backend, path, key, stream):
    body = json.dumps({**ROUTES[path]("hi"), "prompt_cache_key": key, "stream": stream}).encode()
    status, _, payload = raw_request(proxy.base_port, post_head(path, body), body)
    assert status == 400
    assert openai_error(status, payload)["param"] == "prompt_cache_key"
    assert backend.received == []
    nothing_smuggled(backend)


@pytest.mark.parametrize(
    "header",
    [
        "session_id: abc\r\n x-injected: 1\r\n",  # an obs-folded continuation line
        "session_id: abc\rx-injected: 1\r\n",  # a bare CR inside the value
        "x-codex-turn-metadata: {}\r\n\tGET /backend-api/smuggled HTTP/1.1\r\n",
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
def test_header_values_with_line_breaks_never_reach_the_backend(proxy: Proxy, backend, path, header):
    body = json.dumps(ROUTES[path]("hi")).encode()
    status, _, payload = raw_request(proxy.base_port, post_head(path, body, header), body)
    assert status == 400, payload
    data = json.loads(payload)
    message = data["error"]["message"]
    assert "line break" in message or "control characters" in message
    assert backend.received == []


def test_forwarded_codex_headers_must_be_visible_ascii(proxy: Proxy, backend):
    body = json.dumps(ROUTES["/v1/responses"]("hi")).encode()
    status, _, payload = raw_request(proxy.base_port, post_head("/v1/responses", body, "x-codex-window-id: caf\xe9\r\n"), body)
    assert status == 400 and "x-codex-window-id" in openai_error(status, payload)["message"]
    assert backend.received == []


def test_a_non_ascii_cache_key_goes_upstream_as_a_derived_token(proxy: Proxy, backend):
    r = httpx.post(proxy.base_url + "/v1/responses", json={**ROUTES["/v1/responses"]("hi"), "prompt_cache_key": "用户-42 with spaces"})
    assert r.status_code == 200, r.text
    sent = backend.received[-1]
    assert sent.json["prompt_cache_key"] == "用户-42 with spaces"  # the body keeps the client's key
    assert sent.headers["session-id"].isascii() and " " not in sent.headers["session-id"]
    again = httpx.post(proxy.base_url + "/v1/responses", json={**ROUTES["/v1/responses"]("hi"), "prompt_cache_key": "用户-42 with spaces"})
    assert again.status_code == 200 and backend.received[-1].headers["session-id"] == sent.headers["session-id"]


LONE_SURROGATE = b'"\\ud800 tail"'
DEEP = b"[" * 10_000 + b"]" * 10_000


def hostile_body(path: str, kind: str) -> bytes:
    marker = b'"__X__"'
    template = json.dumps(ROUTES[path]("__X__")).encode()
    if kind == "surrogate_text":
        return template.replace(marker, LONE_SURROGATE)
    if kind == "surrogate_cache_key":
        return template[:-1] + b', "prompt_cache_key": ' + LONE_SURROGATE + b"}"
    return template.replace(marker, DEEP)


def curl_h2(proxy: Proxy, path: str, content: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """POST through the regular proxy with curl, which offers h2 first in ALPN (httpx offers http/1.1 first,
    and mitmproxy honours the client's preference)."""
    cmd = [
        "curl",
        "-sS",
        "--http2",
        "--proxy",
        proxy.proxy_url,
        "--cacert",
        proxy.ca,
        "--max-time",
        "30",
        "-o",
        "-",
        "-w",
        "\n%{http_version} %{http_code}",
        "--data-binary",
        "@-",
        f"https://api.openai.com{path}",
    ]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, input=content, capture_output=True, timeout=40, check=True).stdout
    body, _, tail = out.rpartition(b"\n")
    version, status = tail.decode().split()
    return {"2": "HTTP/2", "1.1": "HTTP/1.1"}[version], int(status), body


@pytest.fixture(params=["base_url_h1", "https_proxy_h1", "https_proxy_h2"])
def hostile_post(request, proxy: Proxy):
    """POST a raw body on one transport; returns (HTTP version, status, body)."""
    if request.param == "https_proxy_h2":
        yield lambda path, content, headers: curl_h2(proxy, path, content, headers)
        return
    if request.param == "base_url_h1":
        client = httpx.Client(base_url=proxy.base_url, timeout=30)
    else:
        client = httpx.Client(
            base_url="https://api.openai.com", proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30
        )
    with client:

        def post(path: str, content: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
            r = client.post(path, content=content, headers=headers)
            return r.http_version, r.status_code, r.content

        yield post


@pytest.mark.parametrize("kind", ["surrogate_text", "surrogate_cache_key", "deep_nesting"])
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_unencodable_or_too_deep_json_is_a_400_in_the_clients_format(request, hostile_post, backend, path, kind):
    headers = {"content-type": "application/json"}
    if path.startswith("/v1/messages"):
        headers["anthropic-version"] = "2023-06-01"
    version, status, payload = hostile_post(path, hostile_body(path, kind), headers)
    assert version == ("HTTP/2" if request.node.callspec.params["hostile_post"].endswith("h2") else "HTTP/1.1")
    assert status == 400, payload[:300]
    body = json.loads(payload)
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error"
    assert backend.received == []


def test_escaped_surrogate_pairs_are_fine(proxy: Proxy, backend):
    body = json.dumps(ROUTES["/v1/chat/completions"]("smile \U0001f600")).encode()  # ensure_ascii: \\ud83d\\ude00
    assert b"\\ud83d" in body
    r = httpx.post(proxy.base_url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200 and "\U0001f600" in r.json()["choices"][0]["message"]["content"]


def test_no_traceback_in_the_log(proxy: Proxy):
    assert "Traceback" not in proxy.log


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_a_compressed_bomb_is_a_413_and_never_expanded_whole(proxy: Proxy, backend, coding):
    import gzip

    import brotli
    from backports import zstd

    pack = {"gzip": gzip.compress, "br": brotli.compress, "zstd": zstd.compress}[coding]
    text = b'{"model": "gpt-5.5", "input": "' + b"a" * 100_000_000 + b'"}'  # 100 MB of JSON, over max-request-bytes (64 MiB)
    bomb = pack(text)
    assert len(bomb) < 1_000_000
    r = httpx.post(
        proxy.base_url + "/v1/responses", content=bomb, headers={"content-type": "application/json", "content-encoding": coding}, timeout=60
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert backend.received == []
    small = httpx.post(
        proxy.base_url + "/v1/responses",
        content=pack(json.dumps(ROUTES["/v1/responses"]("hi")).encode()),
        headers={"content-type": "application/json", "content-encoding": coding},
        timeout=60,
    )
    assert small.status_code == 200, small.text[:300]
