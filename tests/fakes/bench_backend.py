"""The fake Codex backend as its own process, serving the benchmark's streams (`scripts/bench.py`).

    python -m tests.fakes.bench_backend      # prints "listening PORT", serves until stdin closes

Run in its own process so that the benchmark's client and the backend do not share one GIL. The
prompt of a request says what to stream: `events:N` (N one-character text deltas, default 20) and
`chunks:frames` (one SSE frame per HTTP chunk, the default) or `chunks:tiny` (the same bytes cut
into 1–40-byte chunks). A frame chunk leaves in its own `send()` (TCP_NODELAY is set on each
connection by `CodexBackend`), so a proxy sees as many small writes as the backend makes; tiny chunks
leave packed into sends of up to 1,400 bytes (a TCP segment's worth), since ~37,000 sends of their
own would make the backend, not the proxies, set the pace. Replies are encoded once per shape and
cached, so the backend's own cost stays small beside the proxies'. A `response.create` on a WebSocket
is answered from its prompt the same way, one message per event.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import random
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.codex_backend import CodexBackend, FakeCatalog, Received, Reply, SSEReply, turn

DEFAULT_EVENTS = 20
SEGMENT = 1400  # bytes per send() of a tiny-chunked reply
_EVENTS = re.compile(rb"events:(\d+)")
_CHUNKS = re.compile(rb"chunks:(\w+)")
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
    b"cache-control: no-cache\r\nx-request-id: req_bench\r\n"
    b"x-codex-primary-used-percent: 12.5\r\nx-codex-primary-window-minutes: 300\r\n"
    b"x-codex-secondary-used-percent: 40\r\nx-codex-secondary-window-minutes: 10080\r\n\r\n"
)


def bench_events(n: int) -> list[tuple[str, dict[str, Any]]]:
    """A real-shaped Codex turn of `n` one-character deltas (the text is `"x" * n`)."""
    text = "x" * n
    return turn(response_id="resp_bench").text(text, deltas=list(text)).events()


def encode(events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    """One SSE frame per event, as the backend writes them."""
    return [f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode() for kind, payload in events]


def tiny_pieces(data: bytes, seed: int = 16) -> list[bytes]:
    """`data` cut into 1–40-byte pieces at seeded random points: inside frames, inside `\\n\\n`, anywhere."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        size = rng.randint(1, 40)
        out.append(data[i : i + size])
        i += size
    return out


@functools.lru_cache(maxsize=32)
def prepared(n: int, chunking: str) -> tuple[bytes, ...]:
    """The sends of one reply: its HTTP chunks (framed: `size CRLF data CRLF`, then the last chunk), one per
    send for frames, packed into sends of up to 1,400 bytes when tiny."""
    frames = encode(bench_events(n))
    if chunking != "tiny":
        return (*(b"%x\r\n%s\r\n" % (len(p), p) for p in frames), b"0\r\n\r\n")
    sends, current = [], b""
    for piece in tiny_pieces(b"".join(frames)):
        chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
        if len(current) + len(chunk) > SEGMENT:
            sends.append(current)
            current = b""
        current += chunk
    return (*sends, current + b"0\r\n\r\n")


@dataclass
class PreparedSSE(SSEReply):
    """An SSE reply whose sends were encoded in advance (`prepared`)."""

    chunks: tuple[bytes, ...] = field(default_factory=tuple)


def bench_responder(req: Received) -> Reply:
    m = _EVENTS.search(req.body)
    c = _CHUNKS.search(req.body)
    n = int(m[1]) if m else DEFAULT_EVENTS
    chunking = c[1].decode() if c else "frames"
    return PreparedSSE([], chunks=prepared(n, "tiny" if chunking == "tiny" else "frames"))


def bench_ws_responder(frame: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A WebSocket turn: the events the prompt of its `response.create` asks for (`events:N`)."""
    m = _EVENTS.search(json.dumps(frame.get("input")).encode())
    return bench_events_cached(int(m[1]) if m else DEFAULT_EVENTS)


@functools.lru_cache(maxsize=32)
def bench_events_cached(n: int) -> list[tuple[str, dict[str, Any]]]:
    return bench_events(n)


class _CachedCatalog(FakeCatalog):
    """The fake's catalog with its per-request ETag computed once per account (it hashes the whole catalog)."""

    def etag(self, account_id: str | None, client_version: str | None = None) -> str:
        cache: dict[tuple[str | None, str | None], str] = self.__dict__.setdefault("_etags", {})
        if (account_id, client_version) not in cache:
            cache[account_id, client_version] = super().etag(account_id, client_version)
        return cache[account_id, client_version]


class BenchBackend(CodexBackend):
    """`CodexBackend` answering every Responses call with a prepared stream, and keeping only the last requests."""

    def __init__(self) -> None:
        super().__init__(bench_responder)
        self.catalog = _CachedCatalog()
        self.received = collections.deque(maxlen=16)  # type: ignore[assignment]  # a list in tests; bounded over 10,000s of requests
        self.ws_frames = collections.deque(maxlen=16)  # type: ignore[assignment]
        self.ws_responder = bench_ws_responder

    async def _write_sse(self, writer: asyncio.StreamWriter, reply: SSEReply, models_etag: str = "") -> bool:
        if not isinstance(reply, PreparedSSE):
            return await super()._write_sse(writer, reply, models_etag)
        try:
            writer.write(HEAD)
            for chunk in reply.chunks:
                writer.write(chunk)  # one send() per write while the socket takes them
                await writer.drain()
        except ConnectionError:
            self.disconnects += 1
            return False
        return True


def main() -> int:
    backend = BenchBackend().start()
    print(f"listening {backend.port}", flush=True)
    try:
        sys.stdin.read()  # the benchmark holds our stdin open; EOF (or its exit) stops the backend
    except KeyboardInterrupt:
        pass
    backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
