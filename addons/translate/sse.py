"""Incremental Server-Sent Events parsing and encoding.

The parser accepts body bytes cut at any boundary (inside a line, between `\\r` and `\\n`, inside a
UTF-8 sequence) and returns complete events. A byte is scanned and copied a bounded number of times,
so feeding a stream of n bytes costs O(n) however it is chunked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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
#: A partial frame this short, at a frame boundary, is held unparsed until its blank line arrives (a frame
#: cut by a read boundary is then still taken whole); a longer one is parsed line by line as it comes.
HOLD = 2048

_NAMES: dict[bytes, str] = {}  # event names seen, decoded once (a stream has a handful)


def _event_name(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is None:
        name = raw.decode("utf-8", "replace")
        if len(_NAMES) < 512:  # bounded: names come from the upstream
            _NAMES[raw] = name
    return name


class SSEParser:
    """Feed bytes with `feed()`; get back the events completed by them."""

    __slots__ = ("_buf", "_scan", "_event", "_data", "_has_field")
    #: take a whole common frame in one step (False: line by line only, the reference the tests compare with)
    FRAMES = True

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # where the next newline search starts: bytes before it hold no newline
        self._event: str | None = None
        self._data: list[bytes] = []
        self._has_field = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        self.feed_into(chunk, out.append)
        return out

    def feed_into(self, chunk: bytes, emit: Callable[[SSEEvent], object], run: Callable[[bytes, int], int] | None = None) -> None:
        """Like `feed`, handing each event to `emit` as soon as it is complete. `run(data, pos)`, when given,
        is offered every frame boundary (no event pending): it may consume whole frames itself and return
        where it stopped (`pos` when it takes none)."""
        buf = self._buf
        if buf:
            buf += chunk
            if buf.find(b"\n", self._scan) < 0:  # still no complete line
                self._scan = len(buf)
                return
            data = bytes(buf)
            buf.clear()
        else:  # at a line start (the usual case): read the chunk itself, no copy
            data = chunk if type(chunk) is bytes else bytes(chunk)
        start = 0
        size = len(data)
        while start < size:
            # A whole frame as the backend writes it (an optional `event: ` line, one `data: ` line, a blank
            # line, `\n` endings) with no event pending is taken at once; anything else goes line by line.
            if not self._has_field and self.FRAMES:
                if run is not None and (after := run(data, start)) != start:
                    start = after
                    continue
                name: str | None = None
                at = start
                if data.startswith(b"event: ", at) and (nl := data.find(b"\n", at + 7)) >= 0 and data[nl - 1] != 13:
                    raw = data[at + 7 : nl]
                    name = _NAMES.get(raw) or _event_name(raw)
                    at = nl + 1
                if data.startswith(b"data: ", at) and (nl := data.find(b"\n", at + 6)) >= 0 and data[nl - 1] != 13:
                    if nl + 1 < size and data[nl + 1] == 10:
                        emit(SSEEvent(name, data[at + 6 : nl]))
                        start = nl + 2
                        continue
                if size - start <= HOLD and data[start] != 58 and data.find(b"\n\n", start) < 0 and data.find(b"\n\r\n", start) < 0:
                    break  # a short frame still arriving (not a comment, sent on its line): held whole, taken whole once complete
            if (nl := data.find(b"\n", start)) < 0:
                break
            end = nl - 1 if nl > start and data[nl - 1] == 13 else nl  # strip a trailing \r
            self._line(data[start:end], emit)
            start = nl + 1
        if start < size:
            buf += data[start:]  # a partial line, or a short partial frame: no newline after the last line start
        self._scan = len(buf)

    def close(self) -> list[SSEEvent]:
        """End of body: a final unterminated line still counts, then a pending event is dispatched."""
        out: list[SSEEvent] = []
        if self._buf:
            *lines, last = bytes(self._buf).split(b"\n")  # a held frame may hold whole lines
            self._buf.clear()
            self._scan = 0
            for line in lines:
                self._line(line[:-1] if line.endswith(b"\r") else line, out.append)
            self._line(last.rstrip(b"\r"), out.append)
        self._line(b"", out.append)
        return out

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a line (or of a short frame)."""
        return len(self._buf)

    def _line(self, line: bytes, emit: Callable[[SSEEvent], object]) -> None:
        if not line:
            if self._has_field:
                emit(SSEEvent(self._event, b"\n".join(self._data)))
            self._event, self._data, self._has_field = None, [], False
            return
        if line[0] == 58:  # ":" comment, e.g. keep-alive
            emit(COMMENT)
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


# A JSON string literal as JSON allows it, except that a \u escape of a surrogate must be a high one
# followed by a low one (a lone surrogate cannot be re-encoded as UTF-8, so it takes the slow path).
JSON_STRING = (  # possessive: a near miss fails in linear time (nested greedy quantifiers backtrack exponentially)
    rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]'
    rb"|\\u(?:[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(?![dD][89a-fA-F])[0-9a-fA-F]{4}))*+"
    rb'"'
)
_DELTA = re.compile(rb'"delta"[ \t\r\n]*:[ \t\r\n]*(' + JSON_STRING + rb")")


def delta_literal(data: bytes) -> re.Match[bytes] | None:
    """Where the top-level `delta` string of an event's JSON object sits, found without parsing the object:
    group 1 is its JSON string literal, to be re-embedded as it is (a decode/encode round trip costs more
    than the rest of a delta's translation); `data[:m.start()]` holds the members before it.

    None (parse the event instead) unless this is provably the top-level member: the object's members
    before it hold no backslash (so every quote there is a real one and an even count means `"delta"`
    starts a key) and no nested object, and no other `delta` member follows. The members after it are
    taken as the backend writes them (well-formed JSON). The event must be valid UTF-8, as a parse needs."""
    m = _DELTA.search(data)
    if m is None or data[0] != 123 or data[-1] != 125:  # an object: `{` … `}`
        return None
    start = m.start()
    if data.find(b"\\", 0, start) >= 0 or data.find(b"{", 1, start) >= 0 or data.count(b'"', 0, start) & 1:
        return None
    if data.find(b'"delta"', m.end()) >= 0:
        return None
    if not data.isascii() and not is_utf8(data):
        return None
    return m


_decode_json = json.JSONDecoder().decode


def literal_text(literal: bytes) -> str:
    """The string a JSON string literal (as `JSON_STRING` matches it, valid UTF-8) stands for."""
    return literal[1:-1].decode() if b"\\" not in literal else _decode_json(literal.decode())


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
