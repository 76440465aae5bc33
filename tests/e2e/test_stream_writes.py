"""Streams cost one translation and one client write per upstream read, through the whole addon chain.

The fake backend writes a long stream (one HTTP chunk per SSE frame) in one `send()`, so the proxy reads
hundreds of chunks at once. mitmproxy alone would call the stream translator, and write to the client,
once per chunk; with the stream_reads patch every wrapper around the translator (the raw recorder of
mitmweb's upstream view, the limit and decompression wrappers) must pass that on. The client counts the
HTTP chunks it gets: a handful, not one per event, and together they are the whole, correct answer."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_http_framing import DEADLINE, connect, head, listener  # noqa: F401 (fixture)
from tests.fakes.codex_backend import sse, turn
from tests.proxyproc import Proxy

pytestmark = pytest.mark.e2e

EVENTS = 1500
TEXT = "x" * EVENTS

BODIES = {
    "/v1/chat/completions": {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "go"}]},
    "/v1/responses": {"model": "gpt-5.5", "stream": True, "input": "go"},
    "/v1/messages": {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 32000, "messages": [{"role": "user", "content": "go"}]},
}


def read_chunks(sock) -> list[bytes]:
    """The HTTP chunks of one chunked answer, as the proxy framed them (after checking its 200 head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        assert got, data
        data += got
    status_head, _, data = data.partition(b"\r\n\r\n")
    assert status_head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in status_head.lower(), status_head
    chunks: list[bytes] = []
    while True:
        while b"\r\n" not in data or len(data) < data.index(b"\r\n") + 2 + int(data[: data.index(b"\r\n")], 16) + 2:
            got = sock.recv(65536)
            assert got, "connection closed mid-body"
            data += got
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(data[:size])
        data = data[size + 2 :]


def text_of(path: str, body: bytes) -> str:
    """The streamed text, read from the client's own event format."""
    out = []
    for frame in body.decode().split("\n\n"):
        data = next((line[6:] for line in frame.split("\n") if line.startswith("data: ")), None)
        if data is None or data == "[DONE]":
            continue
        event = json.loads(data)
        if path == "/v1/chat/completions":
            out += [c["delta"].get("content") or "" for c in event["choices"]]
        elif path == "/v1/responses" and event["type"] == "response.output_text.delta":
            out.append(event["delta"])
        elif path == "/v1/messages" and event["type"] == "content_block_delta":
            out.append(event["delta"]["text"])
    return "".join(out)


@pytest.mark.parametrize("path", list(BODIES))
def test_a_read_of_many_upstream_chunks_is_one_client_write(proxy: Proxy, backend, listener, path):  # noqa: F811
    backend.replies.append(sse(turn().text(TEXT, deltas=list(TEXT)).events(), chunking="burst"))
    body = json.dumps(BODIES[path]).encode()
    with connect(proxy, listener, path) as sock:
        sock.settimeout(DEADLINE)
        extra = f"Content-Length: {len(body)}\r\n"
        sock.sendall(head(path, extra, listener) + body)
        chunks = read_chunks(sock)
    assert text_of(path, b"".join(chunks)) == TEXT
    assert len(chunks) < EVENTS / 10, f"{len(chunks)} client chunks for {EVENTS} events"
