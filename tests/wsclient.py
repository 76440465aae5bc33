"""A raw WebSocket client (wsproto over a socket) for the Responses transport, in both proxy modes:
to the base URL directly, or through HTTPS_PROXY (CONNECT + TLS with the mitmproxy CA) to a host.
Raw, so that tests can send what SDKs refuse to (binary frames, broken JSON, oversized frames)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import wsproto
import wsproto.events

TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")


@dataclass
class Closed:
    code: int | None  # None: the connection dropped without a close frame
    reason: str


class Rejected(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"upgrade refused with {status}")
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WSClient:
    def __init__(
        self,
        proxy,
        mode: str,
        path: str = "/v1/responses",
        host: str = "api.openai.com",
        headers: dict[str, str] | None = None,
        timeout: float = 20,
    ) -> None:
        if mode == "base_url":
            self.sock: socket.socket = socket.create_connection(("127.0.0.1", proxy.base_port), timeout=timeout)
            authority = f"127.0.0.1:{proxy.base_port}"
        else:
            raw = socket.create_connection(("127.0.0.1", proxy.regular_port), timeout=timeout)
            raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += raw.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            self.sock = ssl.create_default_context(cafile=proxy.ca).wrap_socket(raw, server_hostname=host)
            authority = host
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        extra = [(k.encode(), v.encode()) for k, v in (headers or {"authorization": "Bearer sk-client-local"}).items()]
        self.sock.sendall(self.ws.send(wsproto.events.Request(host=authority, target=path, extra_headers=extra)))
        self.closed: Closed | None = None
        self._pending: list[Any] = []
        self._text: list[str] = []
        self.headers: dict[str, str] = {}
        rejected: Rejected | None = None
        while True:
            for event in self._read():
                if isinstance(event, wsproto.events.AcceptConnection):
                    self.headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
                    return
                if isinstance(event, wsproto.events.RejectConnection):
                    rejected = Rejected(event.status_code, {k.decode().lower(): v.decode() for k, v in event.headers}, b"")
                    if not event.has_body:
                        raise rejected
                if isinstance(event, wsproto.events.RejectData):
                    rejected.body += event.data
                    if event.body_finished:
                        raise rejected

    def _read(self) -> list[Any]:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        return list(self.ws.events())

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(wsproto.events.TextMessage(text)))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(wsproto.events.BytesMessage(data)))

    def recv(self) -> dict[str, Any] | Closed:
        """The next server frame as JSON, or how the socket closed."""
        while not self._pending:
            if self.closed is not None:
                return self.closed
            try:
                events = self._read()
            except TimeoutError:
                raise
            except (ConnectionError, ssl.SSLError, OSError):
                self.closed = Closed(None, "")
                continue
            for event in events:
                if isinstance(event, wsproto.events.TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        self._pending.append(json.loads("".join(self._text)))
                        self._text = []
                elif isinstance(event, wsproto.events.CloseConnection):
                    self.closed = Closed(event.code, event.reason)
                    try:
                        self.sock.sendall(self.ws.send(event.response()))
                    except Exception:
                        pass
            if self.ws.state == wsproto.ConnectionState.CLOSED and self.closed is None:
                self.closed = Closed(None, "")
        return self._pending.pop(0)

    def turn(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        """Send a frame and read events up to the end of the turn (or the close)."""
        self.send_json(frame)
        return self.read_turn()

    def read_turn(self) -> list[dict[str, Any]]:
        events = []
        while True:
            ev = self.recv()
            if isinstance(ev, Closed):
                raise AssertionError(f"socket closed ({ev.code} {ev.reason}) after {[e.get('type') for e in events]}")
            events.append(ev)
            if ev.get("type") in TERMINAL:
                return events

    def wait_closed(self, timeout: float = 10) -> Closed:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.recv()
            if isinstance(ev, Closed):
                return ev
        raise AssertionError("the socket stayed open")

    def close(self) -> None:
        try:
            if self.ws.state == wsproto.ConnectionState.OPEN:
                self.sock.sendall(self.ws.send(wsproto.events.CloseConnection(1000, "")))
        except Exception:
            pass
        self.sock.close()

    def __enter__(self) -> WSClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def create(text: str = "Hello", model: str = "gpt-5.5", **extra: Any) -> dict[str, Any]:
    """A `response.create` frame as the Codex CLI sends it."""
    return {
        "type": "response.create",
        "model": model,
        "instructions": "You are Codex.",
        "store": False,
        "stream": True,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "include": ["reasoning.encrypted_content"],
        **extra,
    }
