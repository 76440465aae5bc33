"""Give translated streams a clean ending when the upstream connection breaks mid-body.

mitmproxy (12.x) answers an upstream that dies mid-stream by cutting the client's connection: the
client sees a truncated body and no error in its own format. For flows whose stream callable sets
`ends_on_upstream_error`, this patch treats such a break as the end of the upstream body instead:
the callable gets its final `b""` call, appends a terminal error event in the client's format (the
translator knows no terminal event arrived), and the client's response ends normally, keeping
keep-alive. Every other flow keeps mitmproxy's behaviour. `tests/e2e/test_pool.py` guards it.
"""

from __future__ import annotations

import logging

from mitmproxy.proxy.layers.http import HttpStream, ResponseEndOfMessage, ResponseProtocolError

logger = logging.getLogger(__name__)

_original = HttpStream.handle_protocol_error


def _handle_protocol_error(self: HttpStream, event):
    response = self.flow.response if self.flow else None
    stream = getattr(response, "stream", None)
    if (
        isinstance(event, ResponseProtocolError)
        and self.server_state == self.state_stream_response_body
        and getattr(stream, "ends_on_upstream_error", False)
    ):
        logger.warning("cliproxy: upstream broke off mid-stream (%s); ending the client's stream with an error event", event.message)
        yield from self.state_stream_response_body(ResponseEndOfMessage(self.stream_id))
        return
    yield from _original(self, event)


def install() -> None:
    """Idempotent: the script may be reloaded."""
    if HttpStream.handle_protocol_error is not _handle_protocol_error:
        HttpStream.handle_protocol_error = _handle_protocol_error
