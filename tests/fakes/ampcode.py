"""A fake ampcode.com control plane on 127.0.0.1 that records every request (thread-based server).

    with FakeAmpcode() as amp:
        amp.base_url                    # use as ampcode.upstream-url
        amp.received[-1].headers        # what the proxy sent, the injected Amp key included

What it answers:
- `POST /api/internal?<method>` with `{method, params}`: `{"ok": true, "result": …}` (`rpc_results` can override);
  the shapes the pinned Amp CLI accepts were found by probing it (getUserInfo, loadPlugins, loadSkills);
- `POST /api/thread-actors` (Amp "Neo" thread creation): `{threadId, wsToken, ownerUserId, threadVersion}`;
  the CLI then opens a WebSocket to `/actors/gateway/threadActor/websocket/` (Rivet actor protocol),
  which this fake accepts as a plain WebSocket that echoes text messages (`echo: <text>`); it does not
  speak Rivet;
- `POST /api/provider/anthropic/v1/messages`, `…/openai/v1/chat/completions`, `…/openai/v1/responses`,
  `…/google/…:generateContent`: a canned answer from "ampcode", as SSE when the body asks to stream;
- `GET /api/test/sse`: a short event stream; `GET /api/test/hidden-gzip`: gzip bytes *without*
  `content-encoding` (also every JSON answer when `hidden_gzip` is set);
- browser pages (`/threads…`, `/auth…`, `/docs…`, `/settings…`) and RSS (`/news.rss`, `/threads.rss`);
- anything else: 404 JSON.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEXT = "Hello from ampcode"


@dataclass
class AmpRequest:
    method: str
    path: str  # without the query
    query: list[tuple[str, str]]
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = b""
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out += (f"event: {name}\n" if name else "").encode() + f"data: {payload}\n\n".encode()
    return out


def anthropic_answer(model: str, stream: bool) -> tuple[str, bytes]:
    if not stream:
        return "application/json", json.dumps(
            {
                "id": "msg_amp",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": TEXT}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 4},
            }
        ).encode()
    return "text/event-stream", _sse(
        [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_amp",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "usage": {"input_tokens": 5, "output_tokens": 0},
                    },
                },
            ),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def chat_answer(model: str, stream: bool) -> tuple[str, bytes]:
    if not stream:
        return "application/json", json.dumps(
            {
                "id": "chatcmpl-amp",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            }
        ).encode()
    chunk = {"id": "chatcmpl-amp", "object": "chat.completion.chunk", "created": 1, "model": model}
    return "text/event-stream", _sse(
        [
            (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": TEXT}, "finish_reason": None}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            (None, "[DONE]"),
        ]
    )


def responses_answer(model: str) -> tuple[str, bytes]:
    return "application/json", json.dumps(
        {
            "id": "resp_amp",
            "object": "response",
            "model": model,
            "status": "completed",
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}],
        }
    ).encode()


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode: int, data: bytes, mask: bool = False) -> bytes:
    """One final WebSocket frame (clients mask, servers do not)."""
    head = bytes([0x80 | opcode])
    n = len(data)
    bit = 0x80 if mask else 0
    head += (
        bytes([bit | n])
        if n < 126
        else bytes([bit | 126]) + struct.pack("!H", n)
        if n < 65536
        else bytes([bit | 127]) + struct.pack("!Q", n)
    )
    if not mask:
        return head + data
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))


def ws_read(stream) -> tuple[int, bytes] | None:
    """(opcode, payload) of the next frame from a file-like stream or socket, None at EOF."""
    read = stream.read if hasattr(stream, "read") else lambda n: _recv_exact(stream, n)
    head = read(2)
    if len(head) < 2:
        return None
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read(8))[0]
    key = read(4) if head[1] & 0x80 else None
    data = read(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return head[0] & 0x0F, data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        piece = sock.recv(n - len(out))
        if not piece:
            break
        out += piece
    return out


class FakeAmpcode:
    def __init__(self) -> None:
        self.received: list[AmpRequest] = []
        self.hidden_gzip = False  # gzip every JSON answer without saying so
        self.rpc_results: dict[str, Any] = {}  # RPC method -> result, overriding the defaults
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = AmpRequest(
                    self.command,
                    parts.path,
                    parse_qsl(parts.query, keep_blank_values=True),
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                fake.received.append(req)
                if self.headers.get("upgrade", "").lower() == "websocket" and req.path.startswith("/actors/"):
                    self._websocket()
                    return
                status, ctype, payload, stream = fake.answer(req)
                self.send_response(status)
                self.send_header("content-type", ctype)
                if stream:
                    self.send_header("transfer-encoding", "chunked")
                    self.send_header("cache-control", "no-cache")
                    self.end_headers()
                    for event in payload.split(b"\n\n")[:-1]:
                        piece = event + b"\n\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                        time.sleep(0.01)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _websocket(self) -> None:
                accept = base64.b64encode(hashlib.sha1(self.headers["sec-websocket-key"].encode() + WS_GUID).digest()).decode()
                self.send_response(101)
                self.send_header("upgrade", "websocket")
                self.send_header("connection", "Upgrade")
                self.send_header("sec-websocket-accept", accept)
                if protocols := self.headers.get("sec-websocket-protocol"):
                    self.send_header("sec-websocket-protocol", protocols.split(",")[0].strip())
                self.end_headers()
                self.wfile.flush()
                while (frame := ws_read(self.rfile)) is not None:
                    opcode, data = frame
                    if opcode == 0x8:  # close
                        self.connection.sendall(ws_frame(0x8, data[:2]))
                        break
                    if opcode == 0x1:
                        self.connection.sendall(ws_frame(0x1, b"echo: " + data))
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-ampcode")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAmpcode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAmpcode:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def last(self, path_prefix: str) -> AmpRequest:
        return next(r for r in reversed(self.received) if r.path.startswith(path_prefix))

    # -- answers -------------------------------------------------------------------------------
    def rpc(self, method: str, params: Any) -> Any:
        if method in self.rpc_results:
            return self.rpc_results[method]
        if method == "getUserInfo":
            return {
                "id": "user_fake0001",
                "email": "amp-user@example.com",
                "username": "amp-user",
                "displayName": "Amp User",
                "team": None,
                "features": [],
                "credits": {"balance": 1000},
            }
        if method in ("loadPlugins", "loadSkills"):
            return []
        return {}

    def answer(self, req: AmpRequest) -> tuple[int, str, bytes, bool]:
        """(status, content type, body, stream?)"""
        path = req.path
        if path == "/api/internal" and req.method == "POST":
            try:
                call = req.json
            except ValueError:
                return self._json(400, {"ok": False, "error": {"message": "invalid JSON"}})
            method = call.get("method") or (req.query[0][0] if req.query else "")
            return self._json(200, {"ok": True, "result": self.rpc(method, call.get("params"))})
        if path == "/api/thread-actors" and req.method == "POST":
            try:
                thread = req.json.get("threadId")
            except (ValueError, AttributeError):
                thread = None
            return self._json(
                200,
                {
                    "threadId": thread or "T-7873e6bd-0000-4000-8000-000000000001",
                    "wsToken": "ws_fake_token",
                    "ownerUserId": "user_fake0001",
                    "threadVersion": 1,
                },
            )
        if path.startswith("/api/provider/") and req.method == "POST":
            try:
                body = req.json
            except ValueError:
                body = {}
            model = body.get("model") or path.rsplit("/models/", 1)[-1].split(":")[0]
            stream = bool(body.get("stream")) or "stream" in path.lower()
            if path.endswith("/v1/messages"):
                ctype, data = anthropic_answer(model, stream)
            elif path.endswith("/chat/completions"):
                ctype, data = chat_answer(model, stream)
            elif path.endswith("/responses"):
                ctype, data = responses_answer(model)
            else:
                ctype, data = (
                    "application/json",
                    json.dumps({"candidates": [{"content": {"parts": [{"text": TEXT}]}}], "modelVersion": model}).encode(),
                )
            if ctype == "text/event-stream":
                return 200, ctype, data, True
            return self._json(200, json.loads(data))
        if path == "/api/test/sse":
            return 200, "text/event-stream", _sse([("tick", {"n": i}) for i in range(3)]), True
        if path == "/api/test/hidden-gzip":
            return 200, "application/json", gzip.compress(json.dumps({"hidden": "gzip", "ok": True}).encode()), False
        if path.startswith(("/threads", "/auth", "/docs", "/settings")) and not path.endswith(".rss"):
            return 200, "text/html; charset=utf-8", f"<html><body>ampcode page {path}</body></html>".encode(), False
        if path in ("/news.rss", "/threads.rss"):
            return 200, "application/rss+xml", b"<?xml version='1.0'?><rss version='2.0'><channel><title>Amp</title></channel></rss>", False
        if path.startswith("/api/"):
            return self._json(200, {"ok": True, "path": path, "method": req.method})
        return self._json(404, {"error": "not found", "path": path})

    def _json(self, status: int, body: Any) -> tuple[int, str, bytes, bool]:
        data = json.dumps(body).encode()
        if self.hidden_gzip:
            data = gzip.compress(data)
        return status, "application/json", data, False
