"""A fake ChatGPT Codex backend on 127.0.0.1 that streams real-shaped SSE and records what it got.

It speaks HTTP/1.1 by hand (asyncio streams in a background thread) so tests control the bytes on
the wire: frames split at awkward places (inside `\\r\\n`, inside UTF-8 sequences, several frames in
one chunk), keep-alive comments, streams cut mid-way, JSON errors with real shapes.

    with CodexBackend() as backend:
        backend.base_url          # use as codex-base-url
        backend.replies.append(sse(turn().text("Hi").events()))
        ...
        backend.received[-1].json

It also speaks the Responses WebSocket protocol on the same path (a GET upgrade): one text frame per
event for each `response.create`, per-socket history for `previous_response_id`, and the real
backend's refusals (unknown id on a fresh socket, full history plus `previous_response_id`).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PATH = "/backend-api/codex/responses"


# ---------------------------------------------------------------------------------------------
# What a test can ask the backend to answer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SSEReply:
    events: list[tuple[str, dict[str, Any]]]
    chunking: str = "awkward"  # awkward | frames | whole
    crlf: bool = False
    keepalive_every: int = 0  # a `: keep-alive` comment after every N frames
    cut_after: int | None = None  # close the connection after N frames, mid-stream
    delay: float = 0.0  # seconds between frames
    stall: float = 0.0  # seconds of silence before the status line (a hung upstream)
    pause_after: tuple[int, float] | None = None  # (N, seconds): silence after N frames, mid-stream
    gzip: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    seed: int = 0


@dataclass
class JSONReply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawReply:
    """Bytes exactly as given (a broken answer), then the connection is reset."""

    data: bytes = b""


Reply = SSEReply | JSONReply | RawReply


def sse_head(extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n" + extra.encode() + b"\r\n"


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(events: list[tuple[str, dict[str, Any]]], **kw: Any) -> SSEReply:
    return SSEReply(events, **kw)


def usage_limit(resets_in: int = 3600, plan: str = "plus") -> JSONReply:
    """The backend's quota answer (HTTP 429, `usage_limit_reached` with `resets_in_seconds`)."""
    return JSONReply(429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                     "plan_type": plan, "resets_at": int(time.time()) + resets_in,
                                     "resets_in_seconds": resets_in}})


def unauthorized() -> JSONReply:
    return JSONReply(401, {"error": {"message": "Your authentication token has been invalidated. Please try signing in again.",
                                     "type": "invalid_request_error", "code": "token_invalidated", "param": None}, "status": 401})


def workspace_discovery(account_id: str) -> JSONReply:
    """`GET /backend-api/wham/accounts/check` as the Codex CLI needs it before a turn in ChatGPT mode."""
    return JSONReply(200, {"accounts": [{"id": account_id, "structure": "personal", "workspace_backend_origin": "NO_CONSTRAINT",
                                         "account_routing_override": "NO_CONSTRAINT"}],
                           "account_ordering": [account_id], "default_account_id": account_id})


def detail(status: int, message: str) -> JSONReply:
    return JSONReply(status, {"detail": message})


QUOTA_HEADERS = {
    "x-codex-primary-used-percent": "12.5",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-after-seconds": "9000",
    "x-codex-secondary-used-percent": "40",
    "x-codex-secondary-window-minutes": "10080",
    "x-codex-secondary-reset-after-seconds": "300000",
}


# ---------------------------------------------------------------------------------------------
# Real-shaped event sequences


class Turn:
    """Builds the event sequence of one model turn, in the order the backend sends it."""

    def __init__(self, model: str = "gpt-5.5", response_id: str = "resp_fake0001") -> None:
        self.model = model
        self.id = response_id
        self.items: list[tuple[str, Any]] = []
        self.usage = {"input_tokens": 42, "input_tokens_details": {"cached_tokens": 8},
                      "output_tokens": 17, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 59}
        self.status = "completed"
        self.incomplete_reason: str | None = None
        self.fail: dict[str, Any] | None = None
        self.error_event: dict[str, Any] | None = None

    def reasoning(self, *summaries: str, encrypted: str = "gAAAAABfakeEncryptedReasoning==") -> Turn:
        self.items.append(("reasoning", (summaries, encrypted)))
        return self

    def text(self, text: str, deltas: list[str] | None = None) -> Turn:
        self.items.append(("message", (text, deltas)))
        return self

    def tool_call(self, name: str, arguments: dict[str, Any] | str, call_id: str | None = None, deltas: int = 3) -> Turn:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.items.append(("function_call", (name, args, call_id, deltas)))
        return self

    def incomplete(self, reason: str = "max_output_tokens") -> Turn:
        self.status, self.incomplete_reason = "incomplete", reason
        return self

    def failed(self, code: str = "server_is_overloaded", message: str = "The server is overloaded. Please try again later.") -> Turn:
        self.fail = {"code": code, "message": message}
        return self

    def error(self, code: str = "rate_limit_exceeded", message: str = "Rate limit reached. Please try again in 1.5s.") -> Turn:
        self.error_event = {"type": "error", "error": {"type": "rate_limit_error", "code": code, "message": message}}
        return self

    def events(self, empty_output: bool = True) -> list[tuple[str, dict[str, Any]]]:
        seq = iter(range(10_000))
        ev: list[tuple[str, dict[str, Any]]] = []

        def add(kind: str, **payload: Any) -> None:
            ev.append((kind, {"type": kind, "sequence_number": next(seq), **payload}))

        base = {"id": self.id, "object": "response", "created_at": 1_760_000_000, "model": self.model,
                "status": "in_progress", "output": [], "usage": None}
        add("response.created", response=dict(base))
        add("response.in_progress", response=dict(base))
        done_items = []
        for idx, (kind, spec) in enumerate(self.items):
            if kind == "reasoning":
                summaries, encrypted = spec
                item_id = f"rs_{idx:04d}"
                add("response.output_item.added", output_index=idx, item={"id": item_id, "type": "reasoning", "summary": []})
                for s_idx, summary in enumerate(summaries):
                    add("response.reasoning_summary_part.added", item_id=item_id, output_index=idx, summary_index=s_idx, part={"type": "summary_text", "text": ""})
                    for piece in _pieces(summary, 3):
                        add("response.reasoning_summary_text.delta", item_id=item_id, output_index=idx, summary_index=s_idx, delta=piece)
                    add("response.reasoning_summary_text.done", item_id=item_id, output_index=idx, summary_index=s_idx, text=summary)
                    add("response.reasoning_summary_part.done", item_id=item_id, output_index=idx, summary_index=s_idx, part={"type": "summary_text", "text": summary})
                item = {"id": item_id, "type": "reasoning", "encrypted_content": encrypted,
                        "summary": [{"type": "summary_text", "text": s} for s in summaries]}
            elif kind == "message":
                text, deltas = spec
                item_id = f"msg_{idx:04d}"
                add("response.output_item.added", output_index=idx, item={"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
                add("response.content_part.added", item_id=item_id, output_index=idx, content_index=0, part={"type": "output_text", "annotations": [], "text": ""})
                for piece in deltas if deltas is not None else _pieces(text, 4):
                    add("response.output_text.delta", item_id=item_id, output_index=idx, content_index=0, delta=piece, logprobs=[])
                add("response.output_text.done", item_id=item_id, output_index=idx, content_index=0, text=text, logprobs=[])
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
                add("response.content_part.done", item_id=item_id, output_index=idx, content_index=0, part=part)
                item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
            else:
                name, args, call_id, n = spec
                item_id = f"fc_{idx:04d}"
                call_id = call_id or f"call_{idx:04d}abc"
                add("response.output_item.added", output_index=idx, item={"id": item_id, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": call_id, "name": name})
                for piece in _pieces(args, n):
                    add("response.function_call_arguments.delta", item_id=item_id, output_index=idx, delta=piece)
                add("response.function_call_arguments.done", item_id=item_id, output_index=idx, arguments=args)
                item = {"id": item_id, "type": "function_call", "status": "completed", "arguments": args, "call_id": call_id, "name": name}
            add("response.output_item.done", output_index=idx, item=item)
            done_items.append(item)
        if self.error_event is not None:
            ev.append(("error", {**self.error_event, "sequence_number": next(seq)}))
            return ev
        if self.fail is not None:
            add("response.failed", response={**base, "status": "failed", "error": self.fail})
            return ev
        final = {**base, "status": self.status, "output": [] if empty_output else done_items, "usage": self.usage}
        if self.status == "incomplete":
            final["incomplete_details"] = {"reason": self.incomplete_reason}
            add("response.incomplete", response=final)
        else:
            add("response.completed", response=final)
        return ev


def turn(model: str = "gpt-5.5", response_id: str = "resp_fake0001") -> Turn:
    return Turn(model, response_id)


def _pieces(text: str, n: int) -> list[str]:
    """Split text into about n deltas (at least one)."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def default_responder(req: Received) -> Reply:
    """Answer with a short reasoning summary and an echo of the last user text."""
    try:
        body = req.json
    except ValueError:
        return detail(400, "Invalid JSON")
    for problem, message in (
        (body.get("store") is not False, "Store must be set to false"),
        (body.get("stream") is not True, "Stream must be set to true"),
        (not isinstance(body.get("instructions"), str), "Instructions are required"),
    ):
        if problem:
            return detail(400, message)
    for name in ("max_output_tokens", "temperature", "top_p", "previous_response_id", "max_completion_tokens"):
        if name in body:
            return detail(400, f"Unsupported parameter: {name}")
    last = ""
    for item in body.get("input", []):
        if not isinstance(item, dict):
            return detail(400, "Invalid 'input': expected an array of objects")
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                last = content
            elif isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
                last = "".join(p.get("text", "") for p in content)
            else:
                return detail(400, "Invalid 'input[].content': expected a string or content parts")
    return sse(turn(body.get("model", "gpt-5.5")).reasoning("Thinking about it.").text(f"You said: {last}").events(),
               headers=dict(QUOTA_HEADERS))


# ---------------------------------------------------------------------------------------------
# The WebSocket transport


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RATE_LIMITS_EVENT = {"type": "codex.rate_limits", "plan_type": "plus",
                     "rate_limits": {"primary": {"used_percent": 7.5, "window_minutes": 300, "reset_after_seconds": 9000},
                                     "secondary": {"used_percent": 40.0, "window_minutes": 10080, "reset_after_seconds": 300000}}}


@dataclass
class WSFrame:
    """A client frame the fake received on socket number `socket` (counted from 1)."""

    socket: int
    headers: dict[str, str]  # the socket's handshake headers
    frame: Any  # parsed JSON (or the raw text when it is not JSON)


@dataclass
class WSError:
    """An `error` frame as the backend sends it."""

    status: int
    error: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # then close the socket (1000), as after the connection limit


@dataclass
class WSClose:
    """Drop the socket abruptly (no close frame), optionally after `after` events of the turn."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    after: int = 0


WSReply = list | WSError | WSClose


def ws_usage_limit(resets_in: int = 3600) -> WSError:
    return WSError(429, {"type": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": "plus",
                         "resets_at": int(time.time()) + resets_in, "resets_in_seconds": resets_in},
                   {"x-codex-primary-used-percent": "100", "x-codex-primary-window-minutes": "300"})


def ws_connection_limit() -> WSError:
    return WSError(400, {"type": "invalid_request_error", "code": "websocket_connection_limit_reached",
                         "message": "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue."},
                   close=True)


def _ws_echo(body: dict[str, Any], response_id: str) -> list[tuple[str, dict[str, Any]]]:
    last = ""
    for item in body.get("input", []):
        if isinstance(item, dict) and item.get("role") == "user" and isinstance(item.get("content"), list):
            last = "".join(p.get("text", "") for p in item["content"] if isinstance(p, dict))
    return turn(body.get("model", "gpt-5.5"), response_id).text(f"You said: {last}").events(empty_output=False)


# ---------------------------------------------------------------------------------------------
# The server


class CodexBackend:
    """Start with `with CodexBackend() as backend:` (or `.start()` / `.stop()`)."""

    def __init__(self, responder: Callable[[Received], Reply] = default_responder) -> None:
        self.responder = responder
        self.replies: list[Reply] = []  # answered first, in order, before the responder
        self.received: list[Received] = []
        self.disconnects = 0  # streams whose client went away before the end
        self.pages: dict[str, JSONReply] = {}  # other chatgpt.com paths (no query) -> answer; else 404
        self.ws_handshakes: list[JSONReply] = []  # refusals of the next upgrades, in order (else 101)
        self.ws_replies: list[WSReply | Callable[[dict[str, Any]], WSReply]] = []  # per response.create, in order; else an echo
        self.ws_frames: list[WSFrame] = []
        self.ws_sockets = 0
        self.ws_closes: list[tuple[int, int | None]] = []  # (socket, close code from the client; None: dropped)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-codex")
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backend-api/codex"

    def start(self) -> CodexBackend:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def _close() -> None:
            self._server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # handlers still streaming or stalling
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> CodexBackend:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _next_reply(self, req: Received) -> Reply:
        if self.replies:
            reply = self.replies.pop(0)
            return reply(req) if callable(reply) else reply
        return self.responder(req)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    return
                self.received.append(req)
                if req.method == "GET" and req.path.split("?")[0] == PATH and req.headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(reader, writer, req)
                    return
                if req.method != "POST" or req.path.split("?")[0] != PATH:
                    await _write_json(writer, self.pages.get(req.path.split("?")[0], JSONReply(404, {"detail": "Not Found"})))
                    continue
                reply = self._next_reply(req)
                if isinstance(reply, JSONReply):
                    await _write_json(writer, reply)
                    continue
                if isinstance(reply, RawReply):
                    writer.write(reply.data)
                    await writer.drain()
                    writer.transport.abort()
                    return
                if not await self._write_sse(writer, reply):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnects += 1
        finally:
            writer.close()

    async def _websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: Received) -> None:
        """Serve one Responses WebSocket until either side closes it."""
        import wsproto.connection
        import wsproto.events

        if self.ws_handshakes:
            await _write_json(writer, self.ws_handshakes.pop(0))
            return
        self.ws_sockets += 1
        number = self.ws_sockets
        accept = base64.b64encode(hashlib.sha1(req.headers.get("sec-websocket-key", "").encode() + WS_GUID).digest()).decode()
        head = ["HTTP/1.1 101 Switching Protocols", "upgrade: websocket", "connection: Upgrade", f"sec-websocket-accept: {accept}",
                f"x-codex-turn-state: ts-{number}", "x-models-etag: etag-fake-1", "openai-model: gpt-5.5"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        conn = wsproto.connection.Connection(wsproto.connection.ConnectionType.SERVER)
        history: dict[str, list[Any]] = {}  # response id -> the socket's whole context after it
        text: list[str] = []
        turns = 0

        def send(event: dict[str, Any]) -> None:
            writer.write(conn.send(wsproto.events.TextMessage(json.dumps(event, ensure_ascii=False))))

        while True:
            data = await reader.read(65536)
            if not data:
                self.ws_closes.append((number, None))
                return
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, wsproto.events.CloseConnection):
                    self.ws_closes.append((number, event.code))
                    writer.write(conn.send(event.response()))
                    await writer.drain()
                    return
                if isinstance(event, wsproto.events.Ping):
                    writer.write(conn.send(event.response()))
                    continue
                if isinstance(event, wsproto.events.BytesMessage):
                    writer.write(conn.send(wsproto.events.CloseConnection(1003, "binary frames are not supported")))
                    await writer.drain()
                    return
                text.append(event.data)
                if not event.message_finished:
                    continue
                raw, text = "".join(text), []
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = raw
                self.ws_frames.append(WSFrame(number, req.headers, frame))
                if not isinstance(frame, dict) or frame.get("type") != "response.create":
                    send({"type": "error", "status": 400, "error": {"type": "invalid_request_error", "message": "Unsupported frame"}})
                    continue
                turns += 1
                refusal = _ws_refusal(frame, history)
                if refusal is not None:
                    send(refusal)
                    continue
                reply = self.ws_replies.pop(0) if self.ws_replies else None
                if callable(reply):
                    reply = reply(frame)
                if reply is None:
                    reply = _ws_echo(frame, f"resp_ws{number}_{turns}")
                if isinstance(reply, WSError):
                    send({"type": "error", "status": reply.status, "error": reply.error, "headers": reply.headers})
                    if reply.close:
                        writer.write(conn.send(wsproto.events.CloseConnection(1000, "")))
                        await writer.drain()
                        return
                    continue
                if isinstance(reply, WSClose):
                    for _, ev in reply.events[: reply.after]:
                        send(ev)
                    await writer.drain()
                    writer.transport.abort()
                    self.ws_closes.append((number, None))
                    return
                send(RATE_LIMITS_EVENT)
                context = list(history.get(frame.get("previous_response_id"), [])) + list(frame.get("input") or [])
                for _, ev in reply:
                    send(ev)
                    await writer.drain()
                    if ev.get("type") == "response.completed":
                        response = ev["response"]
                        history[response["id"]] = context + list(response.get("output") or [])
            await writer.drain()

    async def _write_sse(self, writer: asyncio.StreamWriter, reply: SSEReply) -> bool:
        """Stream the reply; False when the connection was closed (cut, or client gone)."""
        if reply.stall:
            await asyncio.sleep(reply.stall)
        head = ["HTTP/1.1 200 OK", "content-type: text/event-stream; charset=utf-8", "transfer-encoding: chunked",
                "cache-control: no-cache", "x-request-id: req_fake"]
        if reply.gzip:
            head.append("content-encoding: gzip")
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        nl = "\r\n" if reply.crlf else "\n"
        frames = []
        for n, (kind, payload) in enumerate(reply.events):
            frames.append(f"event: {kind}{nl}data: {json.dumps(payload, ensure_ascii=False)}{nl}{nl}".encode())
            if reply.keepalive_every and (n + 1) % reply.keepalive_every == 0:
                frames.append(f": keep-alive{nl}{nl}".encode())
        if reply.cut_after is not None:
            frames = frames[: reply.cut_after]
        rng = random.Random(reply.seed)
        if reply.pause_after is not None:  # the frames before the pause leave whole, then silence
            n, pause = reply.pause_after
            pieces = [b"".join(frames[:n]), b"", *_chunk(frames[n:], reply.chunking, rng)]
        else:
            pieces = _chunk(frames, reply.chunking, rng)
        if reply.gzip:
            pieces = [gzip.compress(b"".join(pieces))]
        try:
            for piece in pieces:
                if not piece:
                    await asyncio.sleep(pause)
                    continue
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                elif reply.chunking == "awkward":
                    await asyncio.sleep(0.0005)  # let each piece leave as its own TCP segment
            if reply.cut_after is not None:
                writer.transport.abort()
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            self.disconnects += 1
            return False
        return True


def _ws_refusal(frame: dict[str, Any], history: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The real backend's refusals on a socket: an id it does not hold, and items it already holds."""
    previous = frame.get("previous_response_id")
    if previous is None:
        return None
    if previous not in history:
        return {"type": "error", "status": 400, "error": {"type": "invalid_request_error", "code": "previous_response_not_found",
                                                          "message": f"Previous response with id '{previous}' not found.", "param": "previous_response_id"}}
    held = history[previous]
    ids = {item.get("id") for item in held if isinstance(item, dict) and item.get("id")}
    for item in frame.get("input") or []:
        if isinstance(item, dict) and (item.get("id") in ids or item in held):
            return {"type": "error", "status": 400, "error": {"type": "invalid_request_error", "code": None, "param": "input",
                                                              "message": f"Duplicate item found with id {item.get('id') or 'msg'}."}}
    return None


def _chunk(frames: list[bytes], mode: str, rng: random.Random) -> list[bytes]:
    if mode == "whole":
        return [b"".join(frames)]
    if mode == "frames":
        return frames
    # awkward: cut inside frames at random points, sometimes right after a \r or inside a
    # multi-byte character, and sometimes glue the tail of one frame to the head of the next.
    data = b"".join(frames)
    out, i = [], 0
    while i < len(data):
        size = rng.choice((1, 2, 3, 7, 13, 40, 97, 300))
        out.append(data[i : i + size])
        i += size
    return out


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        line = await reader.readline()
    except ConnectionError:
        return None
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    elif (length := int(headers.get("content-length", "0"))) > 0:
        body = await reader.readexactly(length)
    return Received(method, path, headers, body)


async def _write_json(writer: asyncio.StreamWriter, reply: JSONReply) -> None:
    body = json.dumps(reply.body).encode()
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
              500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(reply.status, "Error")
    head = [f"HTTP/1.1 {reply.status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in reply.headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
