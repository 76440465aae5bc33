"""One stream-callable call per upstream socket read, for the stream callables that ask for it.

mitmproxy (12.x) reads an HTTP/1 response body in `Http1Connection.read_body`, which turns every
HTTP chunk of a socket read into its own `ResponseData` event: the flow's `response.stream`
callable is called once per chunk, and each piece it returns is written to the client on its own.
The Codex backend sends one SSE frame per chunk, so a read holding hundreds of frames costs
hundreds of calls and socket writes. For a response whose stream callable has a true
`joins_reads` attribute, this patch hands the callable all the body bytes of one read at once
(the same bytes in the same order; nothing is held back for a later read, so no event reaches the
client later than before). With a callable that returns one joined chunk per call, a read then
costs one call and one write.

Every other response keeps mitmproxy's behaviour. `install` refuses any version but 12.x, and
tests/unit/test_mitm_contract.py checks that the internals used here still behave as relied on.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from mitmproxy import version
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import ResponseData

try:  # private modules: another layout means another mitmproxy, and install() then changes nothing
    from mitmproxy.proxy.layers.http import _http1
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
except ImportError:  # pragma: no cover
    _http1, ReceiveHttp = None, None  # type: ignore[assignment,misc]

from cliproxy.addons.mitm import fence

logger = logging.getLogger(__name__)

SUPPORTED = fence.supported() and _http1 is not None
#: The attribute a stream callable sets to be called once per socket read.
MARKER = "joins_reads"

_original: Any = None


def joins_reads(stream: Any) -> bool:
    return callable(stream) and getattr(stream, MARKER, False) is True


def _read_body(self, event) -> Generator[commands.Command, Any, None]:
    response = self.response  # set by Http1Client.read_headers; the flow's response is the same object
    if response is None or not joins_reads(response.stream):
        return (yield from _original(self, event))
    pending: list[bytes] = []
    for command in _original(self, event):
        if isinstance(command, ReceiveHttp) and isinstance(command.event, ResponseData):
            pending.append(command.event.data)
            continue
        if pending:  # the end of the body, or a protocol error: what came before it goes first
            yield ReceiveHttp(ResponseData(self.stream_id, b"".join(pending)))
            pending = []
        yield command
    if pending:
        yield ReceiveHttp(ResponseData(self.stream_id, pending[0] if len(pending) == 1 else b"".join(pending)))


def install() -> bool:
    """Idempotent (the script may be reloaded); False, and mitmproxy's own behaviour, on versions other than 12.x."""
    global _original
    if not SUPPORTED:
        logger.warning("cliproxy: mitmproxy %s is not 12.x; streamed answers are translated one upstream chunk at a time", version.VERSION)
        return False
    client = _http1.Http1Client
    if client.read_body is not _read_body:
        _original = client.read_body
        client.read_body = _read_body  # type: ignore[method-assign]  # the fenced patch itself
    return True
