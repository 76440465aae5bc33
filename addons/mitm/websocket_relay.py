"""cliproxy's Responses sockets through mitmproxy's WebSocket relay: closing with a chosen code, and
relaying the backend's streamed deltas without a hook each.

mitmproxy (12.x) lets an addon drop and inject WebSocket messages, but not close a socket with a
code, and when the upstream ends a socket it hands the client the upstream's close (or 1006, which
RFC 6455 forbids on the wire). The Codex CLI recovers from a close only when told how: 1012 with
reason "upstream requires HTTP replay" makes it replay the full history on a fresh socket, which a
new upstream socket (that holds no `previous_response_id` state) needs. This patch of
`WebsocketLayer.relay_messages`:

- `close(flow, code, reason)`: an injected message of type `CloseRequest` closes both sides, the
  client with `code`/`reason` and the upstream with 1000;
- on flows whose state names `ws_close_as` (code, reason), a close that starts at the upstream (a
  close frame or a dropped connection) reaches the client with that code and reason instead;
- on flows whose state sets `ws_quiet_deltas`, a backend message that is a streamed delta
  (`response.….delta`, most of a turn) is relayed without the `websocket_message` hook: cliproxy acts
  on the other messages of a turn (rate limits, errors, the terminal event), and the hook with the
  `update` after it cost more than the rest of the relay. The message stays on the flow (mitmweb
  shows it); on these flows, the flow keeps only its newest messages (`keep_newest`).

Every other flow keeps mitmproxy's behaviour. `install` refuses another major version and
`tests/unit/test_mitm_contract.py` checks the internals used here in milliseconds.
"""

from __future__ import annotations

import re
import struct
import time
from typing import Any

import wsproto
import wsproto.events
from mitmproxy import ctx, http, version, websocket
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.websocket import WebsocketEndHook, WebsocketLayer, WebsocketMessageHook, WebSocketMessageInjected
from wsproto.frame_protocol import Opcode

from cliproxy.addons.mitm import fence

#: A backend message that is a streamed delta, as its first bytes show (compact or spaced JSON).
QUIET = re.compile(rb'\{"type": ?"response\.[a-z_.]*delta"')
#: Messages a socket's flow keeps: mitmproxy keeps every relayed message on the flow for the socket's life
#: (a Codex CLI session of 200 turns of 2,000 events held ~145 MB); older ones are dropped in batches.
KEPT_MESSAGES = 1000
#: What this module relies on: the layer's relay method, its two wsproto connections and `done` state.
LAYER_INTERNALS = ("relay_messages", "done", "start")

_original = WebsocketLayer.relay_messages


class CloseRequest(websocket.WebSocketMessage):
    """An injected pseudo-message that asks the layer to close the socket (never relayed as data)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(Opcode.TEXT, False, b"")
        self.close_code, self.close_reason = code, reason


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked close frame (server to client) carrying `code` and `reason` (cut to fit a control frame)."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes([0x88, len(payload)]) + payload


def _state(flow: http.HTTPFlow) -> dict[str, Any]:
    return flow.metadata.get("cliproxy") or {}


def _close(self: WebsocketLayer, code: int, reason: str):
    ws = self.flow.websocket
    assert ws is not None  # the layer exists only for flows that upgraded (mitmproxy's relay asserts the same)
    ws.timestamp_end = time.time()
    ws.closed_by_client = False
    ws.close_code, ws.close_reason = code, reason
    for conn, event in (
        (self.server_ws, wsproto.events.CloseConnection(1000, "")),
        (self.client_ws, wsproto.events.CloseConnection(code, reason)),
    ):
        if conn.state in (wsproto.ConnectionState.OPEN, wsproto.ConnectionState.REMOTE_CLOSING):
            yield conn.send2(event)
        yield commands.CloseConnection(conn.conn)
    yield WebsocketEndHook(self.flow)
    self.flow.live = False
    self._handle_event = self.done


def keep_newest(messages: list[websocket.WebSocketMessage]) -> None:
    """Drop the oldest messages once there are twice KEPT_MESSAGES (the newest, the current one too, stay)."""
    if len(messages) > 2 * KEPT_MESSAGES:
        del messages[:-KEPT_MESSAGES]


def _relay_messages(self: WebsocketLayer, event):
    if isinstance(event, WebSocketMessageInjected) and isinstance(event.message, CloseRequest):
        yield from _close(self, event.message.close_code, event.message.close_reason)
        return
    ws = self.flow.websocket
    assert ws is not None  # the layer exists only for flows that upgraded (mitmproxy's relay asserts the same)
    st = _state(self.flow)
    replace, quiet = st.get("ws_close_as"), st.get("ws_quiet_deltas")
    was_open = ws.timestamp_end is None
    for command in _original(self, event):
        if quiet and isinstance(command, WebsocketMessageHook):
            keep_newest(ws.messages)
            message = ws.messages[-1]
            if not message.from_client and not message.injected and message.is_text and QUIET.match(message.content):
                continue  # relayed as it came, right after this
        if (
            replace
            and was_open
            and ws.timestamp_end is not None
            and not ws.closed_by_client
            and isinstance(command, commands.SendData)
            and command.connection is self.context.client
        ):
            code, reason = replace
            ws.close_code, ws.close_reason = code, reason
            command = commands.SendData(command.connection, close_frame(code, reason))
        yield command


def close(flow: http.HTTPFlow, code: int, reason: str) -> None:
    """Close a live WebSocket flow: the client gets `code` and `reason`, the upstream 1000."""
    if flow.websocket is None or flow.websocket.timestamp_end is not None:
        return
    server = ctx.master.addons.get("proxyserver")
    server.inject_event(WebSocketMessageInjected(flow, CloseRequest(code, reason)))


def check_version(found: str = version.VERSION) -> None:
    fence.require(WebsocketLayer, LAYER_INTERNALS, "to close WebSockets with a code", found)


def install() -> None:
    """Idempotent: the script may be reloaded. Refuses a mitmproxy whose internals may differ."""
    check_version()
    if WebsocketLayer.relay_messages is not _relay_messages:
        WebsocketLayer.relay_messages = _relay_messages  # type: ignore[method-assign]  # the fenced patch
