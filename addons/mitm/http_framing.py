"""HTTP/1 framing faults and oversized request bodies end in the client's format on cliproxy's routes.

mitmproxy (12.x) handles these in its HTTP/1 layer, before or without any addon hook:

- a head it cannot frame (negative, non-numeric or differing duplicate content-length, a bad request
  line) gets its HTML 400, sent straight from `Http1Server.read_headers`;
- a head its validation refuses (content-length together with transfer-encoding, a transfer-encoding
  other than chunked) gets the HTML 400 that `Http1Server.send` renders for a `ResponseProtocolError`;
- a bad chunk size or chunk footer closes the connection with no answer at all (`read_body`);
- a chunked body with trailers raises NotImplementedError inside the layer: no answer, a traceback;
- a request body is buffered whole before any limit applies; its own `body_size_limit` option is global
  and would cap responses and traffic cliproxy does not serve, and streaming the request (the
  `flow.request.stream` callable) opens the upstream connection and sends the head before the body,
  which cliproxy must first read and rewrite.

For requests whose route cliproxy serves (decided from the head as the client sent it, like the
router does; any request on the base-URL listener), this module instead answers a JSON error in the
client's format (400 for framing, 413 over `max-request-bytes`, mitmproxy's status otherwise), reads
and drops chunked trailers (mitmproxy cannot forward them; `chunked_reader`), and counts the body as it arrives: past
the limit the 413 goes out at once and the rest of the body is read and dropped, never stored (an
SDK that sends its whole body before reading still gets the 413; the connection closes afterwards).
Everything else keeps mitmproxy's behaviour.

These are mitmproxy internals, so `install` refuses any version but 12.x; tests/unit/test_http_framing.py
checks that each one still exists and behaves as relied on here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from mitmproxy import http, version
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import (
    HttpResponseHeadersHook,
    HttpStream,
    RequestData,
    RequestEndOfMessage,
    RequestHeaders,
    RequestProtocolError,
    ResponseProtocolError,
)

try:  # private modules: another layout means another mitmproxy, and install() then changes nothing
    from mitmproxy.proxy.layers.http import _http1
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
except ImportError:  # pragma: no cover
    _http1, ReceiveHttp = None, None  # type: ignore[assignment,misc]

from cliproxy.addons.core import routes
from cliproxy.addons.mitm import fence
from cliproxy.addons.mitm.chunked_reader import JoiningChunkedReader
from cliproxy.addons.mitm.flowstate import FlowState, reply_error, state
from cliproxy.addons.mitm.modes import is_base_url_listener
from cliproxy.addons.translate import errors
from cliproxy.addons.translate.errors import request_too_large

logger = logging.getLogger(__name__)

SUPPORTED = fence.supported() and _http1 is not None
_FORMAT = "_cliproxy_format"  # on an Http1Server: the client format of its current request, or None

_originals: dict[str, Any] = {}


def client_format(mode, host: str, path: str, method: str, anthropic_client: bool) -> routes.ClientFormat | None:
    """The client format of a route cliproxy serves, or None when the request is not cliproxy's."""
    route = routes.classify(host, path, method, reverse_listener=is_base_url_listener(mode), anthropic_client=anthropic_client)
    return route.format if route else None


def _format_of(context, request: http.Request | None) -> routes.ClientFormat | None:
    if request is not None:
        if request.method == "CONNECT":
            return None
        host = request.pretty_host or context.client.sni or (context.server.address or ("",))[0]
        return client_format(context.client.proxy_mode, host, request.path, request.method, "anthropic-version" in request.headers)
    # The head did not parse: only the listener and the TLS name are known.
    host = context.client.sni or (context.server.address or ("",))[0]
    return client_format(context.client.proxy_mode, host or "", "/", "GET", False)


def error_bytes(status: int, message: str, fmt: routes.ClientFormat) -> bytes:
    """A whole HTTP/1.1 error response in the client's format; the connection closes after it."""
    kind, code = {400: ("invalid_request_error", "invalid_request_framing"), 413: ("invalid_request_error", "request_too_large")}.get(
        status, ("server_error", "proxy_error")
    )
    status, headers, body = errors.render(errors.ProxyError(status, message, kind, code), fmt)
    return http1.assemble_response(http.Response.make(status, body, {**headers, "connection": "close"}))


def _framing_message(request: http.Request | None) -> str:
    if request is None:
        return "the request head is malformed (request line or a header line cannot be parsed)"
    try:
        http1.expected_http_body_size(request)
    except ValueError as exc:
        return f"the request framing is invalid: {exc}"
    return "the request head is malformed"


def _protocol_message(event: ResponseProtocolError) -> str:
    message = event.message.split(" Disable the validate_inbound_headers option")[0]
    return f"the request was refused: {message}" if event.code.http_status_code() == 400 else message


# ---------------------------------------------------------------------------------------------
# Http1Server (the client side of an HTTP/1 connection)


def _read_headers(self, event) -> Generator[commands.Command, Any, None]:
    for command in _originals["read_headers"](self, event):
        if isinstance(command, ReceiveHttp) and isinstance(command.event, RequestHeaders):
            setattr(self, _FORMAT, _format_of(self.context, self.request))
        elif isinstance(command, commands.SendData) and self.state == self.read_headers:
            # While still reading the head, mitmproxy sends only its HTML 400 for a head it cannot frame.
            fmt = _format_of(self.context, self.request)
            if fmt is not None:
                command = commands.SendData(self.conn, error_bytes(400, _framing_message(self.request), fmt))
        yield command


def _read_body(self, event) -> Generator[commands.Command, Any, None]:
    # read_body closes the connection and then reports the protocol error (bad chunk size, cut body):
    # a JSON 400 goes out first if nothing has been answered yet.
    closing: commands.CloseConnection | None = None
    for command in _originals["read_body"](self, event):
        if closing is not None:
            message = command.event.message if isinstance(command, ReceiveHttp) and isinstance(command.event, RequestProtocolError) else ""
            yield from _answer_before_close(self, closing, message)
            closing = None
        if (
            isinstance(command, commands.CloseConnection)
            and command.connection is self.conn
            and self.response is None
            and getattr(self, _FORMAT, None) is not None
        ):
            closing = command
            continue
        yield command
    if closing is not None:
        yield from _answer_before_close(self, closing, "")


def _answer_before_close(self, closing: commands.CloseConnection, message: str):
    if self.conn.state & ConnectionState.CAN_WRITE:
        detail = message.removeprefix("HTTP/1 protocol error: ") or "the body ended early"
        yield commands.SendData(self.conn, error_bytes(400, f"the request body's framing is invalid: {detail}", getattr(self, _FORMAT)))
    yield closing


def _send(self, event) -> Generator[commands.Command, Any, None]:
    if isinstance(event, ResponseProtocolError) and self.response is None and self.conn.state & ConnectionState.CAN_WRITE:
        status = event.code.http_status_code()
        fmt = getattr(self, _FORMAT, None)
        if status is not None and fmt is not None:
            yield commands.SendData(self.conn, error_bytes(status, _protocol_message(event), fmt))
            yield commands.CloseConnection(self.conn)
            return
    yield from _originals["send"](self, event)


def _make_body_reader(expected_size: int | None):
    return JoiningChunkedReader() if expected_size is None else _originals["make_body_reader"](expected_size)


# ---------------------------------------------------------------------------------------------
# HttpStream (one request/response exchange): the request body, counted as it arrives


def _consume_request_body(self: HttpStream, event) -> Generator[commands.Command, Any, None]:
    st = state(self.flow) if self.flow is not None else None
    if st is None or "max_request_bytes" not in st:
        return (yield from _originals["state_consume_request_body"](self, event))
    limit = st["max_request_bytes"]
    if isinstance(event, RequestData):
        if st.get("body_refused"):
            return  # the answer is out: the rest of the body is read and dropped
        answered_too_large = self.flow.response is not None and self.flow.response.status_code == 413
        if not answered_too_large and len(self.request_body_buf) + len(event.data) <= limit:
            return (yield from _originals["state_consume_request_body"](self, event))
        yield from _refuse_body(self, st, limit)
        return
    if isinstance(event, RequestEndOfMessage) and st.get("body_refused"):
        self.flow.request.timestamp_end = time.time()
        self.client_state = self.state_done
        if self.server_state == self.state_done:
            yield from self.flow_done()
        return
    yield from _originals["state_consume_request_body"](self, event)


def _refuse_body(self: HttpStream, st: FlowState, limit: int) -> Generator[commands.Command, Any, None]:
    """Answer now (413, or the error already set at requestheaders) while the client is still sending."""
    st["body_refused"] = True
    self.request_body_buf.clear()
    self.flow.request.data.content = b""
    if self.flow.response is None:
        reply_error(self.flow, request_too_large(limit))
    response = self.flow.response
    assert response is not None  # set just above, or earlier by requestheaders
    if self.flow.request.http_version.startswith("HTTP/1"):
        response.headers["connection"] = "close"  # the rest of the body is drained, then the connection ends
    logger.info("cliproxy: request body over %d bytes refused while it was still arriving", limit)
    response.timestamp_start = time.time()
    yield HttpResponseHeadersHook(self.flow)
    yield from self.send_response()  # the end of the response follows the end of the request body


def install() -> bool:
    """Idempotent (the script may be reloaded); False, and mitmproxy's own behaviour, on versions other than 12.x."""
    if not SUPPORTED:
        logger.warning("cliproxy: mitmproxy %s is not 12.x; HTTP framing errors keep mitmproxy's HTML answers", version.VERSION)
        return False
    patches = {
        "read_headers": (_http1.Http1Server, _read_headers),
        "read_body": (_http1.Http1Server, _read_body),
        "send": (_http1.Http1Server, _send),
        "state_consume_request_body": (HttpStream, _consume_request_body),
    }
    for name, (cls, patched) in patches.items():
        if getattr(cls, name) is not patched:
            _originals[name] = getattr(cls, name)
            setattr(cls, name, patched)
    if _http1.make_body_reader is not _make_body_reader:
        _originals["make_body_reader"] = _http1.make_body_reader
        _http1.make_body_reader = _make_body_reader
    return True
