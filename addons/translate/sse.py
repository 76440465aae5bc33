"""Incremental Server-Sent Events parsing and encoding.

The parser accepts body bytes cut at any boundary (inside a line, between `\\r` and `\\n`, inside a
UTF-8 sequence) and returns complete events. Every byte is scanned once, so feeding a stream of n
bytes costs O(n) however it is chunked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (None when absent) and raw `data:` bytes."""

    event: str | None
    data: bytes

    def json(self) -> Any:
        return json.loads(self.data)


#: A comment frame (`: …`) seen by the parser, reported so translators can forward keep-alives.
COMMENT = SSEEvent("__comment__", b"")


class SSEParser:
    """Feed bytes with `feed()`; get back the events completed by them."""

    __slots__ = ("_buf", "_scan", "_event", "_data", "_has_field")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # where the next newline search starts: bytes before it hold no newline
        self._event: str | None = None
        self._data: list[bytes] = []
        self._has_field = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf
        buf += chunk
        out: list[SSEEvent] = []
        start = 0
        while (nl := buf.find(b"\n", self._scan)) >= 0:
            end = nl - 1 if nl > start and buf[nl - 1] == 13 else nl  # strip a trailing \r
            self._line(bytes(buf[start:end]), out)
            start = self._scan = nl + 1
        if start:
            del buf[:start]
        self._scan = len(buf)
        return out

    def close(self) -> list[SSEEvent]:
        """End of body: a final unterminated line still counts, then a pending event is dispatched."""
        out: list[SSEEvent] = []
        if self._buf:
            line = bytes(self._buf).rstrip(b"\r")
            self._buf.clear()
            self._scan = 0
            self._line(line, out)
        self._line(b"", out)
        return out

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a line."""
        return len(self._buf)

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            if self._has_field:
                out.append(SSEEvent(self._event, b"\n".join(self._data)))
            self._event, self._data, self._has_field = None, [], False
            return
        if line[0] == 58:  # ":" comment, e.g. keep-alive
            out.append(COMMENT)
            return
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
            self._has_field = True
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
            self._has_field = True
        # id / retry / unknown fields carry nothing we use


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # built once: json.dumps with options builds one per call


def _dumps(obj: Any) -> bytes:
    return _encode(obj).encode()


def encode(data: Any, event: str | None = None) -> bytes:
    """One SSE frame. `data` is JSON-encoded unless it is already `bytes`."""
    payload = data if isinstance(data, bytes) else _dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
dumps = _dumps
