"""The two sides of a served flow, kept for mitmweb: the client's request as it was sent, and the upstream's
request and raw answer. All kept as plain values in the flow's state (saved flows stay readable) with
secrets masked: stored flows never hold a token or a client key.

The flow shows the client's exchange once it is answered (hooks.notes puts the client's request back on
it); the upstream side is what the content views `cliproxy upstream request` and `cliproxy upstream
answer` show.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from mitmproxy import http

from cliproxy.addons.mitm.flowstate import FlowState

SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "cookie", "set-cookie", "proxy-authorization")
#: An upstream answer is kept up to this size (a long stream is a few hundred KB; the rest is cut with a note).
ANSWER_LIMIT = 4 * 1024 * 1024

_SECRET_NAMES = frozenset(n.encode() for n in SECRET_HEADERS)
_REDACTED = "…(redacted)".encode()


def _masked(value: bytes) -> bytes:
    return value.split(b" ", 1)[0] + b" " + _REDACTED if b" " in value else _REDACTED


def masked_fields(fields: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """Header fields with secret values replaced by a marker that keeps the scheme (`Bearer …`)."""
    return tuple((k, _masked(v)) if k.lower() in _SECRET_NAMES else (k, v) for k, v in fields)


def mask_headers(headers: http.Headers) -> None:
    """Mask the secrets of `headers` in place; one pass over the fields."""
    fields = headers.fields
    if any(k.lower() in _SECRET_NAMES for k, _ in fields):
        headers.fields = masked_fields(fields)


def request_state(req: http.Request) -> dict[str, Any]:
    """The request as plain values (mitmproxy's own state form), secrets masked."""
    kept = req.get_state()
    kept["headers"] = masked_fields(kept["headers"])
    return kept


def client_request_state(req: http.Request, base_url: tuple[str, int] | None) -> dict[str, Any]:
    """The client's request. On the base URL mitmproxy has put its reverse placeholder host
    (`cliproxy.invalid`) on it; the listener's own address is what the client spoke to."""
    kept = request_state(req)
    if base_url is not None:
        host, port = base_url
        kept.update({"host": host, "port": port, "scheme": "http", "authority": ""})
        shown = f"{host}:{port}".encode()
        others = tuple((k, v) for k, v in kept["headers"] if k.lower() != b"host")
        kept["headers"] = ((b"host", shown), *others) if not req.is_http2 and not req.is_http3 else others
    return kept


def keep_answer(st: FlowState, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
    """Keep an upstream answer (the last one wins: after a failover the flow shows what served it)."""
    fields = masked_fields((k.encode(), v.encode()) for k, v in headers)
    st["upstream_answer"] = {
        "status": status,
        "headers": [(k.decode(), v.decode("utf-8", "replace")) for k, v in fields],
        "body": body[:ANSWER_LIMIT],
        "cut": len(body) > ANSWER_LIMIT,
    }


class RawRecorder:
    """Wraps a flow's stream callable and keeps the upstream bytes it is fed (up to ANSWER_LIMIT), so the
    upstream's raw stream can be shown beside the client's translated one. Exposes what cliproxy and its
    patches read of a stream callable (`translator`, `ends_on_upstream_error`, `joins_reads`), as the other
    wrappers do: without `joins_reads` every upstream chunk would again cost its own call and socket write."""

    def __init__(self, inner: Any, on_progress: Any = None, keep: bool = True) -> None:
        self.inner = inner
        self.keep = keep  # False: only the timing is taken (mitmproxy keeps no streamed bodies either)
        self.on_progress = on_progress  # called at most once a second while the stream runs
        self._next_progress = time.time() + 1.0
        self.translator = getattr(inner, "translator", inner)
        self.ends_on_upstream_error = getattr(inner, "ends_on_upstream_error", False)
        self.joins_reads = getattr(inner, "joins_reads", False) is True
        self.raw = bytearray()
        self.cut = False
        self.t_first_token: float | None = None  # when the first text, reasoning or tool-call delta arrived

    def __call__(self, data: bytes) -> Any:
        if self.t_first_token is None and b"delta" in data:
            self.t_first_token = time.time()
        room = ANSWER_LIMIT - len(self.raw) if self.keep else 0
        if len(data) > room and self.keep:
            self.cut = True
        self.raw += data[: max(room, 0)]
        out = self.inner(data)
        if self.on_progress is not None and data and time.time() >= self._next_progress:
            self._next_progress = time.time() + 1.0
            self.on_progress()
        return out
