"""The mitmproxy internals cliproxy relies on still exist with the shape it uses (fast; no proxy run).

If one of these fails after a mitmproxy upgrade, `addons/mitm/upstream_failures.py` needs a look
before the version fence in `check_version` is widened."""

import asyncio
import inspect

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpStream, ResponseEndOfMessage, ResponseProtocolError
from mitmproxy.proxy.server import ConnectionHandler

from cliproxy.addons.mitm import fence, upstream_failures


def test_the_installed_mitmproxy_passes_the_fence():
    upstream_failures.check_version()


@pytest.mark.parametrize("found", ["11.1.3", "13.0.0", "garbage"])
def test_other_major_versions_are_refused_clearly(found):
    with pytest.raises(fence.UnsupportedMitmproxy, match=r"needs mitmproxy 12\.x \(found .*\).*pip install"):
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


# -- addons/mitm/websocket_relay.py ----------------------------------------------------------------


def test_websocket_fence():
    from cliproxy.addons.mitm import websocket_relay

    websocket_relay.check_version()
    with pytest.raises(fence.UnsupportedMitmproxy, match=r"needs mitmproxy 12\.x"):
        websocket_relay.check_version("13.0.0")


def test_websocket_layer_internals():
    """The relay keeps the shape the patch wraps: a generator method of (self, event) that reaches the
    layer through `_handle_event`, wsproto connections `client_ws`/`server_ws` with `send2`, and the
    close branch that sets `timestamp_end`, `closed_by_client` and `close_code` before sending."""
    from mitmproxy.proxy.layers.websocket import WebsocketConnection, WebsocketLayer, WebSocketMessageInjected

    from cliproxy.addons.mitm import websocket_relay

    assert list(inspect.signature(websocket_relay._original).parameters) == ["self", "event"]
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
        # the quiet relay: the message is on the flow when its hook is raised, and relayed after it
        "self.flow.websocket.messages.append(message)\n                    yield WebsocketMessageHook(self.flow)",
        "if not message.dropped:",
    ):
        assert needle in source, needle
    assert "def inject_event" in inspect.getsource(Proxyserver)


@pytest.mark.parametrize("code,reason", [(1012, "upstream requires HTTP replay"), (1003, ""), (1009, "x" * 300)])
def test_close_frames_parse_as_wsproto_reads_them(code, reason):
    import wsproto.connection
    import wsproto.events

    from cliproxy.addons.mitm import websocket_relay

    client = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    client.receive_data(websocket_relay.close_frame(code, reason))
    [event] = list(client.events())
    assert isinstance(event, wsproto.events.CloseConnection) and event.code == code and reason.startswith(event.reason)


def test_websocket_install_is_idempotent():
    from mitmproxy.proxy.layers.websocket import WebsocketLayer

    from cliproxy.addons.mitm import websocket_relay

    websocket_relay.install()
    websocket_relay.install()
    assert WebsocketLayer.relay_messages is websocket_relay._relay_messages


# -- addons/mitm/stream_reads.py -------------------------------------------------------------------


class _Marked:
    joins_reads = True

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, data: bytes) -> list[bytes]:
        self.calls.append(data)
        return [data] if data else []


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _upstream_reads(stream, reads: list[bytes]) -> list:
    """Drive mitmproxy's Http1Client (the upstream side of a connection) through `reads`, setting
    `stream` on the response when its head arrives (where the responseheaders hook does), and return
    the HTTP events it passes on to the stream."""
    from mitmproxy import connection, http, options
    from mitmproxy.proxy import events
    from mitmproxy.proxy.context import Context
    from mitmproxy.proxy.layers.http import ResponseHeaders, _http1
    from mitmproxy.proxy.layers.http._base import ReceiveHttp

    context = Context(connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=0), options.Options())
    context.server = connection.Server(address=("127.0.0.1", 3))
    layer = _http1.Http1Client(context)
    layer.stream_id, layer.request, layer.state = 1, http.Request.make("POST", "http://127.0.0.1:3/r"), layer.read_headers
    got = []
    for data in reads:
        for command in layer._handle_event(events.DataReceived(context.server, data)):
            if isinstance(command, ReceiveHttp):
                if isinstance(command.event, ResponseHeaders):
                    command.event.response.stream = stream
                got.append(command.event)
    return got


def _data(got: list) -> list[bytes]:
    from mitmproxy.proxy.layers.http import ResponseData

    return [e.data for e in got if isinstance(e, ResponseData)]


def test_stream_reads_fence_and_install():
    from mitmproxy.proxy.layers.http import _http1

    from cliproxy.addons.mitm import stream_reads

    assert stream_reads.SUPPORTED
    assert stream_reads.install() and stream_reads.install()
    assert _http1.Http1Client.read_body is stream_reads._read_body
    assert stream_reads._original is _http1.Http1Connection.read_body  # the reader it wraps, not itself


@pytest.mark.parametrize(
    "reads,marked,expected",
    [
        # one read with three chunks: one call when the stream asks for it, mitmproxy's three otherwise
        ([_HEAD + _chunked(b"a", b"bc", b"d")], True, [b"abcd"]),
        ([_HEAD + _chunked(b"a", b"bc", b"d")], False, [b"a", b"bc", b"d"]),
        # reads are never held for the next one: each read's bytes go out with that read
        ([_HEAD + _chunked(b"a"), _chunked(b"b", b"c")[:-3], _chunked(b"c")[-3:]], True, [b"a", b"b", b"c"]),
        ([_HEAD, _chunked(b"x", b"y") + b"0\r\n\r\n"], True, [b"xy"]),
    ],
)
def test_one_stream_call_per_upstream_read(reads, marked, expected, monkeypatch):
    """mitmproxy's HTTP/1 client still emits one ResponseData per chunk, reads the body in `read_body`
    reached through `state`, and puts the head's Response (whose `stream` the hook sets) on the layer:
    the patch merges exactly the data of one read, in order. (With h11's own chunked reader: cliproxy's
    joining reader, tested in test_http_framing.py, already joins the complete chunks of a read.)"""
    from h11._readers import ChunkedReader
    from mitmproxy.proxy.layers.http import ResponseEndOfMessage, _http1

    from cliproxy.addons.mitm import stream_reads

    monkeypatch.setattr(_http1, "make_body_reader", lambda expected_size: ChunkedReader())
    stream_reads.install()
    stream = _Marked() if marked else (lambda data: data)
    got = _upstream_reads(stream, reads)
    assert _data(got) == expected
    if reads[-1].endswith(b"0\r\n\r\n"):
        assert isinstance(got[-1], ResponseEndOfMessage)  # the end still comes after the data


def test_http_stream_calls_the_callable_once_per_data_event_and_writes_each_piece():
    """The other half of the contract: HttpStream passes each ResponseData to the callable and sends one
    ResponseData (one write) per piece it returns, so a translator returning one joined chunk costs one write."""
    from mitmproxy.proxy.layers.http import HttpStream

    source = inspect.getsource(HttpStream.state_stream_response_body)
    for needle in ("chunks = self.flow.response.stream(event.data)", "for chunk in chunks:", "ResponseData(self.stream_id, chunk)"):
        assert needle in source, needle


# -- addons/mitm/hook_dispatch.py ------------------------------------------------------------------


class _Recorder:
    """An addon with children; records the calls of `requestheaders` across a tree of them."""

    def __init__(self, name: str, log: list[str], children: list | None = None, fail: bool = False, halt: bool = False) -> None:
        self.name, self.log, self.addons, self.fail, self.halt = name, log, children or [], fail, halt

    def requestheaders(self, flow) -> None:
        self.log.append(self.name)
        if self.fail:
            raise ValueError(f"{self.name} failed")
        if self.halt:
            from mitmproxy import exceptions

            raise exceptions.AddonHalt()


class _AsyncOne:
    name = "async_one"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def requestheaders(self, flow) -> None:
        await asyncio.sleep(0)
        self.log.append(self.name)


async def _dispatch_log(trigger, make_chain, caplog) -> tuple[list[str], list[str]]:
    """The handler calls of one `requestheaders` event through `trigger`, and the addon errors logged."""
    from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
    from mitmproxy.test import taddons, tflow

    log: list[str] = []
    caplog.clear()
    with taddons.context() as tctx:
        tctx.master.addons.add(*make_chain(log))
        await trigger(tctx.master.addons, HttpRequestHeadersHook(tflow.tflow()))
    return log, [r.getMessage() for r in caplog.records if "Addon error" in r.getMessage()]


CHAINS = {
    "order and children": lambda log: [_Recorder("a", log, [_Recorder("a1", log), _Recorder("a2", log)]), _Recorder("b", log)],
    "an error ends its own tree only": lambda log: [
        _Recorder("a", log, [_Recorder("a1", log, fail=True), _Recorder("a2", log)]),
        _Recorder("b", log),
    ],
    "a halt ends the event": lambda log: [_Recorder("a", log, halt=True), _Recorder("b", log)],
    "async handlers are awaited in order": lambda log: [_AsyncOne(log), _Recorder("b", log)],
}


def test_hook_dispatch_fence_and_install():
    from mitmproxy.addonmanager import AddonManager

    from cliproxy.addons.mitm import hook_dispatch

    assert hook_dispatch.SUPPORTED
    assert hook_dispatch.install() and hook_dispatch.install()
    assert AddonManager.trigger_event is hook_dispatch._trigger_event
    for name in hook_dispatch.CHANGERS:
        assert getattr(AddonManager, name).__wrapped__ is hook_dispatch._originals[name]  # wrapped once, however often installed


@pytest.mark.parametrize("chain", list(CHAINS))
def test_hook_dispatch_calls_what_mitmproxys_walk_calls(chain, caplog):
    from cliproxy.addons.mitm import hook_dispatch

    hook_dispatch.install()

    async def both() -> tuple:
        want = await _dispatch_log(hook_dispatch._originals["trigger_event"], CHAINS[chain], caplog)
        return want, await _dispatch_log(hook_dispatch._trigger_event, CHAINS[chain], caplog)

    want, got = asyncio.run(both())
    assert got == want and want[0]


def test_hook_dispatch_sees_addons_registered_and_removed_later():
    """A script reload removes an addon tree and registers a new one: the next event reaches the new one only."""
    from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
    from mitmproxy.test import taddons, tflow

    from cliproxy.addons.mitm import hook_dispatch

    hook_dispatch.install()
    log: list[str] = []
    parent = _Recorder("parent", log)

    async def events() -> list[list[str]]:
        seen = []
        with taddons.context() as tctx:
            manager = tctx.master.addons
            manager.add(parent)

            async def event() -> None:
                log.clear()
                await manager.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
                seen.append(list(log))

            await event()
            old = _Recorder("old", log)
            parent.addons = [old]
            manager.register(old)
            await event()
            manager.remove(old)
            parent.addons = [_Recorder("new", log)]
            manager.register(parent.addons[0])
            await event()
        return seen

    assert asyncio.run(events()) == [["parent"], ["parent", "old"], ["parent", "new"]]


def _relayed(quiet: bool, frames: list[tuple[str, str]]) -> tuple[int, list[str], int]:
    """Drive the patched relay of a fresh WebSocket layer with `frames` ((side, text), side = client | server):
    (the websocket_message hooks it raised, the texts it relayed, the messages left on the flow)."""
    import wsproto
    import wsproto.connection
    import wsproto.events
    from mitmproxy import options
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.context import Context
    from mitmproxy.proxy.layers.websocket import WebsocketConnection, WebsocketLayer, WebsocketMessageHook
    from mitmproxy.test import tflow

    from cliproxy.addons.mitm import websocket_relay

    flow = tflow.twebsocketflow()
    flow.websocket.messages.clear()
    flow.metadata["cliproxy"] = {"ws_quiet_deltas": True} if quiet else {}
    context = Context(flow.client_conn, options.Options())
    context.server = flow.server_conn
    layer = WebsocketLayer(context, flow)
    layer.client_ws = WebsocketConnection(wsproto.ConnectionType.SERVER, conn=context.client)
    layer.server_ws = WebsocketConnection(wsproto.ConnectionType.CLIENT, conn=context.server)
    senders = {
        side: wsproto.connection.Connection(kind)
        for side, kind in (("client", wsproto.ConnectionType.CLIENT), ("server", wsproto.ConnectionType.SERVER))
    }
    hooks, relayed = 0, []
    for side, text in frames:
        data = senders[side].send(wsproto.events.TextMessage(text))
        conn = context.client if side == "client" else context.server
        for command in websocket_relay._relay_messages(layer, events.DataReceived(conn, data)):
            hooks += isinstance(command, WebsocketMessageHook)
            if isinstance(command, commands.SendData):
                relayed.append(command.data)
    return hooks, relayed, len(flow.websocket.messages)


DELTA = '{"type":"response.output_text.delta","delta":"x"}'
SPACED = '{"type": "response.function_call_arguments.delta", "delta": "{"}'
FRAMES = [("client", '{"type":"response.create"}'), ("server", '{"type":"response.created"}'), ("server", DELTA), ("server", SPACED)]
FRAMES += [("client", DELTA), ("server", '{"type":"response.completed"}')]


@pytest.mark.parametrize("quiet,hooks", [(False, 6), (True, 4)])
def test_quiet_deltas_skip_the_hook_and_are_relayed_all_the_same(quiet, hooks):
    """Only the backend's deltas skip the hook (a client's frame that looks like one does not); every
    message is relayed, in order, and stays on the flow."""
    got_hooks, relayed, kept = _relayed(quiet, FRAMES)
    assert got_hooks == hooks and len(relayed) == len(FRAMES) and kept == len(FRAMES)
    assert DELTA.encode() in relayed[2] and SPACED.encode() in relayed[3]


@pytest.mark.parametrize(
    "frame,hooked", [(("server", DELTA), False), (("client", DELTA), True), (("server", '{"type":"response.created"}'), True)]
)
def test_a_long_quiet_socket_keeps_its_newest_messages(frame, hooked):
    """Hooked or not, the messages of a cliproxy socket stay bounded on its flow."""
    from cliproxy.addons.mitm.websocket_relay import KEPT_MESSAGES

    n = 2 * KEPT_MESSAGES + 5
    hooks, relayed, kept = _relayed(True, [frame] * n)
    assert hooks == (n if hooked else 0) and len(relayed) == n and KEPT_MESSAGES <= kept <= 2 * KEPT_MESSAGES
