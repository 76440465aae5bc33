"""Addon: the Responses API over WebSocket (the Codex CLI's first choice of transport).

The upgrade (`/v1/responses`, `/responses` or `/backend-api/codex/responses` on the base URL,
api.openai.com in proxy mode, chatgpt.com when `codex-cli-pooling` is on) is rewritten onto
`{codex-base}/responses` with one pool account pinned to the socket (chosen like HTTP turns, sticky
by the session header); mitmproxy performs the upstream handshake and relays frames, and the
handshake answer's headers (`x-codex-turn-state`, `x-models-etag`, `openai-model`) reach the client.

Each client `response.create` frame gets the HTTP body's treatment; a bad frame is dropped and
answered with an `error` frame (the socket stays usable); binary and oversized frames close the
socket (1003, 1009), as does a socket that sends no `response.create` within `request-timeout-seconds`
(1008). `generate: false` warm-ups are answered locally. Backend frames feed the pool (`codex.rate_limits`,
usage-limit errors, success). When the pinned account cannot serve a turn (resting, parked, its usage
limit reached) or the backend drops the socket, the client is closed with 1012 "upstream requires
HTTP replay": the Codex CLI then replays the full history on a fresh socket, which gets another
account. With `responses-websocket: false` the upgrade gets a 426 and clients use HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.net.http.url import hostport

from cliproxy.addons.core.failover import Attempt, decide
from cliproxy.addons.core.runtime import Credential, Runtime
from cliproxy.addons.hooks.codex_upstream import client_identity, credential_headers, forwarded_headers, no_credential
from cliproxy.addons.hooks.notes import comment
from cliproxy.addons.hooks.router import websocket_refused
from cliproxy.addons.mitm import websocket_relay
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, reply_error, state
from cliproxy.addons.store.ledger import image_usage_of, usage_fields
from cliproxy.addons.translate import errors
from cliproxy.addons.translate import responses_ws as wire
from cliproxy.addons.translate.headers import session_token
from cliproxy.auth.pool import ANY_MODEL, judge
from cliproxy.auth.quota import parse_quota, parse_rate_limit_event, quota_summary
from cliproxy.auth.store import Account

logger = logging.getLogger(__name__)

#: The handshake names no model: any account that is not resting for every model may take the socket;
#: each turn then checks the account against its own model.
ROUTES = ("responses_websocket", "codex_websocket")
#: Handshake headers that belong to the WebSocket itself and go upstream as the client sent them.
HANDSHAKE = ("upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions")


@dataclass
class Socket:
    """What one client socket needs between frames."""

    member_key: str
    session: str | None
    conversation: wire.Conversation = field(default_factory=wire.Conversation)
    turn: dict[str, Any] | None = None  # the turn in progress
    created: bool = False  # a response.create arrived
    timer: asyncio.TimerHandle | None = None


def _session(headers: http.Headers) -> str | None:
    return headers.get("session_id") or headers.get("session-id") or None


class ResponsesWebsocket:
    name = "cliproxy_responses_ws"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._sockets: dict[str, Socket] = {}

    # -- handshake ---------------------------------------------------------------------------------
    @on_claimed(*ROUTES)
    async def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if st.get("passthrough"):
            return  # chatgpt.com without pooling: the CLI's own account, untouched
        if not self.runtime.config.responses_websocket:
            raise websocket_refused()
        accounts = [m for m in self.runtime.pool.members if isinstance(m.source, Account)]
        if self.runtime.pool.members and not accounts:
            raise websocket_refused()  # API-key members speak HTTP only: the client switches to it at once
        session = _session(flow.request.headers)
        others = {m.key for m in self.runtime.pool.members if not isinstance(m.source, Account)}
        # The model is not known yet: an account resting for some model is the last choice, so that a
        # client sent to a fresh socket after a usage limit does not land on the same account again.
        now = time.time()
        resting = {m.key for m in self.runtime.pool.members if any(until > now for until in m.cooldown_until.values())}
        cred = await self.runtime.credential(ANY_MODEL, exclude=others | resting, session=session) or await self.runtime.credential(
            ANY_MODEL, exclude=others, session=session
        )
        if cred is None:
            raise no_credential(self.runtime, ANY_MODEL)
        self._point(flow, st, cred, session)

    def _point(self, flow: http.HTTPFlow, st: FlowState, cred: Credential, session: str | None) -> None:
        req = flow.request
        forwarded = forwarded_headers(req.headers)
        kept = [(k.lower(), v) for k, v in req.headers.items(multi=True) if k.lower() in HANDSHAKE]
        req.url = cred.url
        identity = client_identity({k for k, _ in forwarded}, self.runtime.config.codex_client_version)
        fields = [
            ("host", hostport(req.scheme, req.host, req.port)),
            *kept,
            *credential_headers(cred),
            ("openai-beta", wire.OPENAI_BETA),
            *identity,
            *forwarded,
        ]
        cache_key = st.get("cache_key")
        if session is None and cache_key:
            fields.append(("session-id", session_token(cache_key)))
        req.headers = http.Headers([(k.encode(), v.encode()) for k, v in fields])
        st.update(
            {
                "upstream": True,
                "websocket": True,
                "account": cred.member.label,
                "account_key": cred.member.key,
                "ws_close_as": [wire.REPLAY_CODE, wire.REPLAY_REASON],
                "ws_quiet_deltas": True,  # deltas skip the websocket_message hook (mitm.websocket_relay)
                "turns": [],
            }
        )
        if session:
            st["cache_key"] = session
        st.setdefault("tried", []).append(cred.member.key)
        st.setdefault("tried_labels", []).append(cred.member.label)

    @on_claimed(*ROUTES, answered=True)
    async def response(self, flow: http.HTTPFlow, st: FlowState) -> None:
        """A refused upgrade: judge the account as for an HTTP answer, and say why in OpenAI's format."""
        resp = flow.response
        if resp is None or not st.get("websocket") or flow.websocket is not None or st.get("error"):
            return
        if resp.headers.get("x-cliproxy-upstream-failure"):
            return  # the proxy's own answer for an unreachable upstream, already in the client's format
        member = self.runtime.pool.get(st.get("account_key", ""))
        if resp.status_code in (404, 405, 426):
            reply_error(flow, websocket_refused())  # the upstream has no WebSocket transport: the client uses HTTP
            return
        decision = decide(
            Attempt(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content or b""),
            refreshed=False,
            backoff_level=member.backoff.get(ANY_MODEL, 0) if member else 0,
        )
        err = decision.error or errors.ProxyError(
            502, f"the upstream refused the WebSocket upgrade with {resp.status_code}", "server_error", "upstream_error"
        )
        if member is not None:
            if decision.action == "refresh":
                await self.runtime.reauthorize(member)  # the next socket carries the fresh token (or the member is parked)
            elif decision.verdict is not None:
                self.runtime.pool.failed(member, ANY_MODEL, decision.verdict)
                self.runtime.save_state(member, force=True)
        reply_error(flow, err)

    # -- the socket --------------------------------------------------------------------------------
    def websocket_start(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("websocket"):
            return
        sock = Socket(st["account_key"], st.get("cache_key"))
        limit = self.runtime.config.request_timeout
        sock.timer = asyncio.get_running_loop().call_later(limit, self._idle, flow, limit)
        self._sockets[flow.id] = sock

    def _idle(self, flow: http.HTTPFlow, limit: int) -> None:
        sock, st = self._sockets.get(flow.id), state(flow)
        if sock is not None and st is not None and not sock.created:
            st["error"] = f"no response.create within {limit}s"
            websocket_relay.close(flow, 1008, f"no response.create within {limit}s (request-timeout-seconds)")

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        sock, st = self._sockets.get(flow.id), state(flow)
        if sock is None or st is None or flow.websocket is None:
            return
        msg = flow.websocket.messages[-1]
        if msg.injected:
            return
        try:
            if msg.from_client:
                self._client_frame(flow, st, sock, msg)
            else:
                self._server_frame(flow, st, sock, msg)
        except Exception:
            logger.exception("cliproxy: WebSocket frame handling failed")
            msg.drop()
            self._inject(
                flow,
                wire.error_frame(errors.ProxyError(500, "cliproxy internal error; see the proxy log", "server_error", "internal_error")),
            )

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        sock = self._sockets.pop(flow.id, None)
        if sock is None:
            return
        if sock.timer is not None:
            sock.timer.cancel()
        st = state(flow)
        if st is None:
            return
        if sock.turn is not None:
            ws = flow.websocket
            how = f"({ws.close_code} {ws.close_reason})" if ws is not None else ""
            self._end_turn(flow, st, sock, f"socket closed mid-turn {how}".strip())
        flow.comment = comment(st)

    # -- client frames -----------------------------------------------------------------------------
    def _client_frame(self, flow: http.HTTPFlow, st: FlowState, sock: Socket, msg) -> None:
        limit = self.runtime.config.max_request_bytes
        if not msg.is_text:
            msg.drop()
            websocket_relay.close(flow, 1003, "binary frames are not supported: send response.create as JSON text")
            return
        if len(msg.content) > limit:
            msg.drop()
            websocket_relay.close(flow, 1009, f"frame larger than max-request-bytes ({limit})")
            return
        try:
            frame = wire.parse_frame(msg.content)
            if frame["type"] in wire.IGNORED_TYPES:
                msg.drop()
                return
            if frame["type"] != "response.create":
                raise errors.bad_request(f"unknown frame type {frame['type'][:100]!r}: cliproxy accepts response.create", "type")
            turn = sock.conversation.translate(frame, self.runtime.config.settings)
        except errors.ProxyError as err:
            msg.drop()
            self._inject(flow, wire.error_frame(err))
            return
        sock.created = True
        if turn.warmup:
            msg.drop()
            for event in sock.conversation.warmup_events(turn):
                self._inject(flow, event)
            return
        member = self.runtime.pool.get(sock.member_key)
        if member is None or not member.available(turn.model, time.time()):
            msg.drop()
            if self._another(turn.model, sock.member_key):
                st["error"] = f"{st.get('account')} is resting; client asked to replay on a fresh socket"
                websocket_relay.close(flow, wire.REPLAY_CODE, wire.REPLAY_REASON)
            else:
                self._inject(flow, wire.error_frame(no_credential(self.runtime, turn.model)))
            return
        msg.content = json.dumps(turn.frame, ensure_ascii=False).encode()
        sock.turn = {
            "model": turn.model,
            "effort": turn.effort,
            "client_model": turn.client_model,
            "cache_key": turn.cache_key,
            "t0": time.time(),
        }
        st.update({"model": turn.model, "effort": turn.effort, "client_model": turn.client_model})

    def _another(self, model: str, member_key: str) -> bool:
        """Whether another account could serve `model` now (then a fresh socket is worth it)."""
        skip = {member_key} | {m.key for m in self.runtime.pool.members if not isinstance(m.source, Account)}
        return bool(self.runtime.pool.candidates(model, skip))

    # -- server frames -----------------------------------------------------------------------------
    def _server_frame(self, flow: http.HTTPFlow, st: FlowState, sock: Socket, msg) -> None:
        event = wire.server_event(msg.content)
        if event is None:
            return
        kind = event.get("type")
        turn = sock.turn
        if turn is not None and "ttfe" not in turn:
            turn["ttfe"] = time.time() - turn["t0"]
        member = self.runtime.pool.get(sock.member_key)
        if kind == "codex.rate_limits":
            self._quota(st, member, parse_rate_limit_event(event))
            return
        if kind == "error":
            self._quota(st, member, parse_quota(wire.headers_of(event)))
        err = wire.error_of(event)
        if err is not None:
            if member is not None and wire.is_usage_limit(err):
                model = turn["model"] if turn else ANY_MODEL
                verdict = judge(429, err.retry_after, True, member.backoff.get(model, 0))
                self.runtime.pool.failed(member, model, verdict)
                self.runtime.save_state(member, force=True)
                logger.warning("cliproxy: %s reached its usage limit over a WebSocket; resting %.0fs", member.label, verdict.cooldown or 0)
                if self._another(model, member.key):
                    msg.drop()  # the client replays on a fresh socket, which gets another account
                    self._end_turn(flow, st, sock, f"{err.status} {err.message[:150]} (replayed on a fresh socket)")
                    websocket_relay.close(flow, wire.REPLAY_CODE, wire.REPLAY_REASON)
                    return
            if turn is not None:
                self._end_turn(flow, st, sock, f"{err.status} {err.message[:150]}")
            return
        if kind in wire.TERMINAL and turn is not None:
            response = event.get("response")
            response = response if isinstance(response, dict) else {}
            usage = response.get("usage")
            if isinstance(usage, dict):
                turn["usage"] = usage_fields(usage)
            if (image_usage := image_usage_of(response)) is not None:
                turn["image_usage"] = image_usage
            if kind == "response.completed" and member is not None:
                for key in {turn.get("cache_key"), sock.session} - {None}:
                    self.runtime.pool.succeeded(member, turn["model"], key)
                if not sock.session and not turn.get("cache_key"):
                    self.runtime.pool.succeeded(member, turn["model"])
            self._end_turn(flow, st, sock, None if kind == "response.completed" else kind)

    def _quota(self, st: FlowState, member, quota: dict[str, Any]) -> None:
        if quota and member is not None:
            member.quota = quota
            st["quota"] = quota_summary(quota)
            self.runtime.save_state(member)

    def _end_turn(self, flow: http.HTTPFlow, st: FlowState, sock: Socket, error: str | None) -> None:
        turn, sock.turn = sock.turn, None
        if turn is None:
            return
        turn["seconds"] = time.time() - turn.pop("t0")
        turn.pop("cache_key", None)
        if error:
            turn["error"] = error
        st.setdefault("turns", []).append(turn)
        flow.comment = comment(st)

    def _inject(self, flow: http.HTTPFlow, content: bytes) -> None:
        ctx.master.commands.call("inject.websocket", flow, True, content, True)
