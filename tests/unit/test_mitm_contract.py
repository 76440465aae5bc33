"""The mitmproxy internals cliproxy relies on still exist with the shape it uses (fast; no proxy run).

If one of these fails after a mitmproxy upgrade, `addons/mitm/upstream_failures.py` needs a look
before the version fence in `check_version` is widened."""

import inspect

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpStream, ResponseEndOfMessage, ResponseProtocolError
from mitmproxy.proxy.server import ConnectionHandler

from cliproxy.addons.mitm import upstream_failures


def test_the_installed_mitmproxy_passes_the_fence():
    upstream_failures.check_version()


@pytest.mark.parametrize("found", ["11.1.3", "13.0.0", "garbage"])
def test_other_major_versions_are_refused_clearly(found):
    with pytest.raises(upstream_failures.UnsupportedMitmproxy, match=r"needs mitmproxy 12\.x \(found .*\).*pip install"):
        upstream_failures.check_version(found)


def test_http_stream_internals():
    for name in upstream_failures.STREAM_INTERNALS:
        assert callable(getattr(HttpStream, name)), name
    assert list(inspect.signature(upstream_failures._original).parameters) == ["self", "event"]
    assert list(inspect.signature(HttpStream.state_stream_response_body).parameters) == ["self", "event"]
    assert {"stream_id", "message"} <= set(inspect.signature(ResponseProtocolError).parameters)
    assert list(inspect.signature(ResponseEndOfMessage).parameters) == ["stream_id"]
    source = inspect.getsource(HttpStream)
    for attribute in ("self.flow", "self.client_state", "self.server_state", "self.stream_id"):
        assert attribute in source, attribute


def test_connection_table_internals():
    assert "connections" in inspect.getsource(Proxyserver.__init__)
    assert callable(ConnectionHandler.close_connection)
    assert "self.transports" in inspect.getsource(ConnectionHandler.__init__)


def test_install_is_idempotent_and_patches_the_stream():
    upstream_failures.install()
    upstream_failures.install()
    assert HttpStream.handle_protocol_error is upstream_failures._handle_protocol_error


# -- addons/mitm/websocket_close.py ----------------------------------------------------------------


def test_websocket_fence():
    from cliproxy.addons.mitm import websocket_close

    websocket_close.check_version()
    with pytest.raises(websocket_close.UnsupportedMitmproxy, match=r"needs mitmproxy 12\.x"):
        websocket_close.check_version("13.0.0")


def test_websocket_layer_internals():
    """The relay keeps the shape the patch wraps: a generator method of (self, event) that reaches the
    layer through `_handle_event`, wsproto connections `client_ws`/`server_ws` with `send2`, and the
    close branch that sets `timestamp_end`, `closed_by_client` and `close_code` before sending."""
    from mitmproxy.proxy.layers.websocket import WebsocketConnection, WebsocketLayer, WebSocketMessageInjected

    from cliproxy.addons.mitm import websocket_close

    assert list(inspect.signature(websocket_close._original).parameters) == ["self", "event"]
    assert callable(WebsocketConnection.send2) and {"flow", "message"} <= set(inspect.signature(WebSocketMessageInjected).parameters)
    source = inspect.getsource(WebsocketLayer)
    for needle in (
        "self._handle_event = self.relay_messages",
        "self.client_ws",
        "self.server_ws",
        "self.flow.websocket.timestamp_end = ",
        "self.flow.websocket.closed_by_client = from_client",
        "yield ws.send2(ws_event)",
        "self._handle_event = self.done",
    ):
        assert needle in source, needle
    assert "def inject_event" in inspect.getsource(Proxyserver)


@pytest.mark.parametrize("code,reason", [(1012, "upstream requires HTTP replay"), (1003, ""), (1009, "x" * 300)])
def test_close_frames_parse_as_wsproto_reads_them(code, reason):
    import wsproto.connection
    import wsproto.events

    from cliproxy.addons.mitm import websocket_close

    client = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    client.receive_data(websocket_close.close_frame(code, reason))
    [event] = list(client.events())
    assert isinstance(event, wsproto.events.CloseConnection) and event.code == code and reason.startswith(event.reason)


def test_websocket_install_is_idempotent():
    from mitmproxy.proxy.layers.websocket import WebsocketLayer

    from cliproxy.addons.mitm import websocket_close

    websocket_close.install()
    websocket_close.install()
    assert WebsocketLayer.relay_messages is websocket_close._relay_messages
