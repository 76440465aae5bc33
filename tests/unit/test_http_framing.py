"""The mitmproxy internals addons/mitm/http_framing.py relies on, checked fast: each still exists and behaves
as the patch assumes (the unpatched behaviour), and the patched one answers in the client's format."""

from __future__ import annotations

import inspect
import json
import ssl

import h11
import pytest
from h11._receivebuffer import ReceiveBuffer
from mitmproxy import version
from mitmproxy.proxy import commands, context, events, layer
from mitmproxy.proxy.layers import modes
from mitmproxy.proxy.layers.http import ErrorCode, HttpStream, RequestHeaders, RequestProtocolError, ResponseProtocolError, _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from cliproxy.addons.hooks.listener import Listener
from cliproxy.addons.mitm import http_framing
from cliproxy.addons.mitm.modes import PlainHttpOnly

BASE = "reverse:http://cliproxy.invalid@127.0.0.1:8317"


@pytest.fixture(autouse=True)
def installed():
    assert http_framing.install()


def test_the_version_fence_admits_the_installed_mitmproxy():
    assert version.VERSION.startswith("12.")
    assert http_framing.install() and http_framing.install()  # idempotent
    assert _http1.make_body_reader is http_framing._make_body_reader
    assert _http1.Http1Server.read_headers is http_framing._read_headers


def test_the_internals_still_exist():
    for name in ("read_headers", "read_body", "send", "mark_done"):
        assert callable(getattr(_http1.Http1Server, name))
    for name in ("state_consume_request_body", "send_response", "flow_done", "state_done", "state_errored"):
        assert callable(getattr(HttpStream, name))
    assert "request_body_buf" in HttpStream.__annotations__
    assert ErrorCode.REQUEST_VALIDATION_FAILED.http_status_code() == 400
    assert ErrorCode.REQUEST_TOO_LARGE.http_status_code() == 413
    assert ErrorCode.KILL.http_status_code() is None


@pytest.fixture
def server():
    """An Http1Server on the base-URL listener, started."""
    with taddons.context() as tctx:
        client = tflow.tclient_conn()
        client.proxy_mode, client.sni = ProxyMode.parse(BASE), None
        srv = _http1.Http1Server(context.Context(client, tctx.options))
        assert list(srv.handle_event(events.Start())) == []
        yield srv


def feed(srv, data: bytes) -> list[commands.Command]:
    return list(srv.handle_event(events.DataReceived(srv.conn, data)))


def sent(cmds: list[commands.Command]) -> list[bytes]:
    return [c.data for c in cmds if isinstance(c, commands.SendData)]


def json_body(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower(), head
    return json.loads(body)


POST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("framing", [b"Content-Length: -5\r\n", b"Content-Length: abc\r\n", b"Content-Length: 3\r\nContent-Length: 4\r\n"])
def test_an_unframable_head(server, framing):
    cmds = feed(server, POST + framing + b"\r\n")
    assert isinstance(cmds[1], commands.CloseConnection)
    assert any(isinstance(c, ReceiveHttp) and isinstance(c.event, RequestProtocolError) for c in cmds)
    assert json_body(sent(cmds)[0])["error"]["code"] == "invalid_request_framing"


def test_the_unpatched_head_error_is_mitmproxys_html(server):
    server.buf += POST + b"Content-Length: -5\r\n\r\n"
    cmds = list(http_framing._originals["read_headers"](server, events.DataReceived(server.conn, b"")))
    assert isinstance(cmds[0], commands.SendData) and b"text/html" in cmds[0].data
    assert isinstance(cmds[1], commands.CloseConnection)


def test_a_bad_chunk_size(server):
    cmds = feed(server, POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    kinds = [type(c).__name__ for c in cmds]
    # unpatched read_body closes, then reports: the JSON answer goes in just before the close
    assert kinds[-3:] == ["SendData", "CloseConnection", "ReceiveHttp"], kinds
    assert "illegal chunk header" in json_body(sent(cmds)[0])["error"]["message"]


def test_trailers_are_dropped_not_fatal(server):
    cmds = feed(server, POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Sum: 1\r\n\r\n")
    assert sent(cmds) == []
    assert [type(c.event).__name__ for c in cmds if isinstance(c, ReceiveHttp)] == ["RequestHeaders", "RequestData", "RequestEndOfMessage"]


def test_unpatched_mitmproxy_still_cannot_take_trailers():
    """When this fails, mitmproxy reads trailers itself and the reader patch can go."""
    reader = http_framing._originals["make_body_reader"](None)
    buf = ReceiveBuffer()
    buf += b"0\r\nX-Sum: 1\r\n\r\n"
    event = reader(buf)
    assert isinstance(event, h11.EndOfMessage) and event.headers
    assert "trailers are not implemented" in inspect.getsource(http_framing._originals["read_body"])


def test_a_validation_refusal_is_json_in_the_clients_format(server):
    anthropic = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nanthropic-version: 2023-06-01\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    feed(server, anthropic)
    message = "Received message with both transfer-encoding and content-length headers from client, refusing to prevent request smuggling attacks. Disable the validate_inbound_headers option to skip this security check."
    cmds = list(server.handle_event(ResponseProtocolError(server.stream_id, message, ErrorCode.REQUEST_VALIDATION_FAILED)))
    body = json_body(sent(cmds)[0])
    assert body["type"] == "error" and "validate_inbound_headers" not in body["error"]["message"]
    assert isinstance(cmds[-1], commands.CloseConnection)


def test_the_unpatched_protocol_error_answer_is_html(server):
    feed(server, POST + b"Content-Length: 2\r\n\r\n")
    cmds = list(http_framing._originals["send"](server, ResponseProtocolError(server.stream_id, "x", ErrorCode.REQUEST_TOO_LARGE)))
    assert b"413" in cmds[0].data.split(b"\r\n")[0] and b"text/html" in cmds[0].data


@pytest.mark.parametrize(
    "spec,host,path,method,anthropic,expected",
    [
        (BASE, "127.0.0.1", "/v1/chat/completions", "POST", False, "openai"),
        (BASE, "127.0.0.1", "/v1/messages", "POST", False, "anthropic"),
        (BASE, "127.0.0.1", "/anything", "GET", True, "anthropic"),
        ("regular", "api.openai.com", "/v1/responses", "POST", False, "openai"),
        ("regular", "api.anthropic.com", "/v1/messages", "POST", False, "anthropic"),
        ("regular", "example.com", "/v1/chat/completions", "POST", False, None),
        ("regular", "chatgpt.com", "/", "GET", False, None),
    ],
)
def test_client_format(spec, host, path, method, anthropic, expected):
    assert http_framing.client_format(ProxyMode.parse(spec), host, path, method, anthropic) == expected


def client_hello() -> bytes:
    out = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


@pytest.mark.parametrize(
    "spec,data,refused",
    [
        (BASE, "hello", True),
        (BASE, b"GET / HTTP/1.1\r\n\r\n", False),
        ("regular", "hello", False),
    ],
)
def test_tls_on_the_base_url_is_refused_by_a_plain_400(spec, data, refused):
    with taddons.context() as tctx:
        client = tflow.tclient_conn()
        client.proxy_mode = ProxyMode.parse(spec)
        ctx = context.Context(client, tctx.options)
        (modes.ReverseProxy if spec == BASE else modes.HttpProxy)(ctx)
        nextlayer = layer.NextLayer(ctx)
        nextlayer.events.append(events.DataReceived(client, client_hello() if data == "hello" else data))
        Listener().next_layer(nextlayer)
        assert isinstance(nextlayer.layer, PlainHttpOnly) is refused
        if refused:
            cmds = list(nextlayer.layer.handle_event(events.Start())) + list(nextlayer.layer.handle_event(nextlayer.events[0]))
            assert sent(cmds)[0].startswith(b"HTTP/1.1 400 ") and isinstance(cmds[-1], commands.CloseConnection)


def test_receive_http_wraps_request_headers():
    assert ReceiveHttp(RequestHeaders(1, tflow.treq(), False)).event.stream_id == 1
