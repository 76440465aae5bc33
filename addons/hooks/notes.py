"""Addons: what mitmweb and mitmdump show of cliproxy's flows.

- The flow shows the client's exchange: `ClientSide` (early in the chain) keeps the request as the client
  sent it, `FlowNotes` (late) puts it back on the flow once it is answered, so the list shows the client's
  host and path and a replay re-runs the client's request through cliproxy (a fresh account choice). The
  upstream request and the upstream's raw answer stay one click away (content views, hooks.views).
- `flow.comment`: route, client model → upstream model, effort, account, usage, latency, failover, the
  door (base URL or proxy); written when the flow is claimed, at the first byte and at the end (mitmweb's
  list is updated each time). Failures are marked: a stream that failed after its 200 with ❌, other
  errors with ⚠; a 429 names the accounts resting and why.
- Secrets are masked on the stored flow once the request has gone upstream (what was sent is unchanged):
  mitmweb and saved flows never hold a token.
- Under mitmweb: the comment column is shown and streamed bodies are kept, unless set otherwise; an image
  an answer carries is added to the list as a picture of its own.
- A hint in the log when a client does not trust the mitmproxy CA.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from mitmproxy import contentviews, ctx, http, tls

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.views import VIEWS
from cliproxy.addons.mitm import webview
from cliproxy.addons.mitm.exchange import RawRecorder, client_request_state, keep_answer, mask_headers, request_state
from cliproxy.addons.mitm.flowstate import FlowState, state
from cliproxy.addons.mitm.modes import is_base_url_listener
from cliproxy.addons.translate.conversation import images_in

__all__ = ["ClientSide", "FlowNotes", "comment", "mask_headers", "resting"]

logger = logging.getLogger(__name__)

_HINT_EVERY = 300.0
#: mitmweb's columns when cliproxy runs under it (its own default lacks the comment).
WEB_COLUMNS = ["icon", "path", "method", "status", "size", "time", "comment"]
#: What an answer carrying an image holds (images_in looks closer only then).
_IMAGE_MARKERS = (b'"b64_json"', b"image_generation_call", b"data:image/", b'"base64"')
#: Routes answered by a host beyond cliproxy (timing then means something).
_FORWARDED_ROUTES = frozenset({"amp_proxy"})


def _served_upstream(st: FlowState) -> bool:
    return bool(
        st.get("upstream")
        or st.get("passthrough")
        or st.get("images_path")  # the backend's image endpoints, called by the Images hook itself
        or st.get("amp") == "upstream"
        or st.get("route") in _FORWARDED_ROUTES
    )


def comment(st: FlowState, now: float | None = None, running: bool = False) -> str:
    """The flow's note: what served it and how, one line (plus one per WebSocket turn)."""
    parts: list[Any] = [st.get("route", "?")]
    model, client_model = st.get("model"), st.get("client_model")
    if model:
        parts.append(f"{client_model} → {model}" if client_model and client_model != model else model)
    if st.get("effort"):
        clamped = st.get("effort_clamped")
        parts.append(f"{st['effort']} (asked {clamped}, clamped to the model's levels)" if clamped else st["effort"])
    if st.get("service_tier") and st["service_tier"] not in ("auto", "default"):
        parts.append(f"tier {st['service_tier']}")  # what served, which may differ from what was asked
    if st.get("account"):
        parts.append(f"{st['account']} ({st['quota']})" if st.get("quota") else st["account"])
    if usage := st.get("usage"):
        parts.append(f"{usage.get('input_tokens')}→{usage.get('output_tokens')} tok")
    if st.get("images_path"):
        parts.append(f"image via {st['images_path']}")  # never the image itself: mitmweb shows the answer's body
    if ended := st.get("ended_locally"):
        parts.append("ended at the client's stop sequence" if ended == "stop" else "ended at the client's token limit")
    if st.get("t0"):
        now = time.time() if now is None else now
        ttfb = f"ttfb {st['t_headers'] - st['t0']:.2f}s" if st.get("t_headers") else None
        if running:
            parts.append(
                f"{ttfb} · streaming… {now - st['t0']:.0f}s" if ttfb else "waiting for the upstream…" if st.get("upstream") else "running…"
            )
        elif _served_upstream(st):
            parts.append(f"{ttfb} · {now - st['t0']:.2f}s" if ttfb else f"{now - st['t0']:.2f}s")
        elif not st.get("websocket"):
            parts.append("answered by cliproxy")
    if st.get("failover"):
        parts.append(
            f"failover ×{st['failover']} ({' → '.join(st.get('tried_labels', []))})"
            if st.get("tried_labels")
            else f"failover ×{st['failover']}"
        )
    if st.get("door"):
        parts.append(f"via {st['door']}")
    if st.get("error"):  # first: the list shows a comment's start; a 429 says what the rest is about
        parts.insert(0, f"✗ 429 {st['rest']}" if st.get("rest") else f"✗ {st['error']}")
    return "\n".join([" · ".join(str(p) for p in parts), *(turn_line(n, t) for n, t in enumerate(st.get("turns") or (), 1))])


def turn_line(n: int, turn: dict) -> str:
    """One line per turn of a WebSocket: model, effort, tokens, time to first event, duration, failure."""
    model, client_model = turn.get("model"), turn.get("client_model")
    parts = [f"turn {n}", f"{client_model} → {model}" if client_model and client_model != model else model]
    if turn.get("effort"):
        parts.append(turn["effort"])
    if usage := turn.get("usage"):
        parts.append(f"{usage.get('input_tokens')}→{usage.get('output_tokens')} tok")
    if turn.get("ttfe") is not None:
        parts.append(f"ttfe {turn['ttfe']:.2f}s")
    if turn.get("seconds") is not None:
        parts.append(f"{turn['seconds']:.2f}s")
    if turn.get("error"):
        parts.append(f"✗ {turn['error']}")
    return " · ".join(str(p) for p in parts)


def resting(members: Any, model: str, now: float) -> str:
    """The accounts resting for `model` and why: `a@x usage_limit_reached until 15:42 (in 58m)`."""
    out = []
    for m in members:
        if not m.serves(model):
            continue
        if m.parked:
            out.append(f"{m.label} needs a new login")
            continue
        wait = m.wait(model, now)
        if wait <= 0:
            continue
        why = "usage_limit_reached" if {model, "*"} & set(m.limited) else "rate limited (429)"
        until = time.strftime("%H:%M", time.localtime(now + wait))
        span = f"{wait / 3600:.1f}h" if wait >= 5400 else f"{wait / 60:.0f}m" if wait >= 90 else f"{wait:.0f}s"
        out.append(f"{m.label} {why} until {until} (in {span})")
    return "; ".join(out)


def _door(flow: http.HTTPFlow) -> str:
    door = "base URL" if is_base_url_listener(flow.client_conn.proxy_mode) else "proxy"
    return f"{door} (replayed)" if flow.is_replay == "request" else door


def _listener_address(flow: http.HTTPFlow) -> tuple[str, int] | None:
    """The base-URL listener's address this flow came in on (None in proxy mode)."""
    if not is_base_url_listener(flow.client_conn.proxy_mode) or not flow.client_conn.sockname:
        return None
    host, port = flow.client_conn.sockname[:2]
    return str(host), int(port)


def _client_request(st: FlowState) -> http.Request | None:
    kept = st.get("client_request")
    return http.Request.from_state(dict(kept)) if kept else None


class ClientSide:
    """Keeps the client's side of each claimed flow before any addon rewrites it: the request as sent,
    the door, and the upstream's answer as it arrived (for answers cliproxy then replaces). Sits right
    after the Router, before the addons that translate and rewrite."""

    name = "cliproxy_client_side"

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or "client_request" in st or flow.websocket is not None:
            return
        st["door"] = _door(flow)
        st["client_request"] = client_request_state(flow.request, _listener_address(flow))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is not None and st.get("upstream") and flow.response is not None and not st.get("websocket") and not st.get("answered"):
            keep_answer(st, flow.response.status_code, flow.response.headers.items(multi=True), b"")

    def response(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("upstream") or st.get("streamed") or st.get("answered") or st.get("websocket"):
            return
        resp = flow.response
        if resp is not None:  # the upstream's answer, before CodexUpstream maps or aggregates it
            keep_answer(st, resp.status_code, resp.headers.items(multi=True), resp.get_content(strict=False) or b"")


class FlowNotes:
    name = "cliproxy_notes"

    def __init__(self, runtime: Runtime | None = None) -> None:
        self.runtime = runtime  # the pool, for what a 429 rests on
        self._hinted: dict[str, float] = {}

    def load(self, loader) -> None:
        for view in VIEWS:
            contentviews.add(view())

    def running(self) -> None:
        if not webview.under_mitmweb():
            return
        # mitmweb's defaults hide the comment and drop streamed bodies; a user's own setting is kept.
        if ctx.options.web_columns == ctx.options.default("web_columns"):
            ctx.options.update(web_columns=WEB_COLUMNS)
        if ctx.options.store_streamed_bodies == ctx.options.default("store_streamed_bodies"):
            ctx.options.update(store_streamed_bodies=True)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None:
            return
        st.setdefault("t_headers", time.time())
        mask_headers(flow.request.headers)
        resp = flow.response
        if st.get("streamed") and resp is not None and callable(resp.stream):
            keep = bool(getattr(ctx.options, "store_streamed_bodies", False))  # the upstream's raw events too, then
            resp.stream = RawRecorder(resp.stream, lambda: self._show_running(flow), keep)

    def update(self, flows) -> None:
        """mitmproxy runs this after every hook a flow goes through, and mitmweb then pushes the flow as it
        is (mid-flight: the upstream request). A running flow is pushed again right after, with its comment
        and the client's request."""
        if not webview.under_mitmweb():
            return
        for flow in flows:
            st = state(flow) if isinstance(flow, http.HTTPFlow) else None
            if st is not None and flow.live and not st.get("shown") and not st.get("websocket"):
                asyncio.get_running_loop().call_soon(self._show_running, flow)

    @staticmethod
    def _show_running(flow: http.HTTPFlow) -> None:
        """The comment of a running flow, pushed to mitmweb's list with the client's request."""
        st = state(flow)
        if st is None or st.get("shown") or not flow.live:
            return
        flow.comment = comment(st, running=True)
        kept = st.get("client_request") or client_request_state(flow.request, _listener_address(flow))  # before `request`
        webview.show(flow, http.Request.from_state(dict(kept)))

    def response(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def _finish(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None:
            return
        mask_headers(flow.request.headers)
        if flow.error and not st.get("error") and not st.get("complete"):
            st["error"] = flow.error.msg
        if flow.response is not None and flow.response.timestamp_end is None:
            flow.response.timestamp_end = time.time()  # a client that hung up after the last event
        self._keep_stream(flow, st)
        self._show_client_side(flow, st)
        status = flow.response.status_code if flow.response is not None else None
        if status == 429 and self.runtime is not None and st.get("model") and st.get("error"):
            if rest := resting(self.runtime.pool.members, st["model"], time.time()):
                st["rest"] = rest
        flow.comment = comment(st)
        if st.get("error"):
            flow.marked = ":x:" if status == 200 else ":warning:"  # a 200 that failed would look fine otherwise
        self._add_images(flow, st)

    @staticmethod
    def _keep_stream(flow: http.HTTPFlow, st: FlowState) -> None:
        recorder = flow.response.stream if flow.response is not None else None
        while recorder is not None and not isinstance(recorder, RawRecorder):
            recorder = getattr(recorder, "inner", None)  # Amp's rewriter wraps it
        answer = st.get("upstream_answer")
        if isinstance(recorder, RawRecorder) and answer is not None:
            answer.update({"body": bytes(recorder.raw), "cut": recorder.cut, "streamed": True})
            if recorder.t_first_token:
                answer["t_first_token"] = recorder.t_first_token

    @staticmethod
    def _show_client_side(flow: http.HTTPFlow, st: FlowState) -> None:
        """Put the client's request back on the flow; the upstream request is kept in the state."""
        if st.get("shown") or flow.websocket is not None or not (kept := st.get("client_request")):
            return
        st["shown"] = True
        if st.get("upstream") or st.get("passthrough") or st.get("amp") == "upstream" or st.get("route") in _FORWARDED_ROUTES:
            st["upstream_request"] = request_state(flow.request)
        flow.request = http.Request.from_state(dict(kept))

    @staticmethod
    def _add_images(flow: http.HTTPFlow, st: FlowState) -> None:
        """Under mitmweb, each image an answer carries becomes a flow of its own that shows it as a picture."""
        resp = flow.response
        if resp is None or resp.status_code != 200 or not webview.under_mitmweb():
            return
        body = resp.get_content(strict=False) or b""
        if not any(marker in body for marker in _IMAGE_MARKERS):
            return
        for n, image in enumerate(images_in(body), 1):
            kind = "png" if image.startswith(b"\x89PNG") else "jpeg" if image.startswith(b"\xff\xd8") else "webp"
            shown = http.HTTPFlow(flow.client_conn, flow.server_conn)
            shown.id = str(uuid.uuid4())
            shown.request = http.Request.make("GET", f"http://cliproxy/images/{flow.id[:8]}/{n}.{kind}")
            shown.request.timestamp_start = shown.request.timestamp_end = flow.request.timestamp_start
            shown.response = http.Response.make(200, image, {"content-type": f"image/{kind}"})
            shown.response.timestamp_start = shown.response.timestamp_end = time.time()
            shown.comment = f"image {n} of the {st.get('route')} answer above ({len(image):,} bytes)"
            shown.live = False
            webview.add(shown)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        error = data.conn.error or ""
        if "trust" not in error and "unknown ca" not in error:
            return
        host = data.conn.sni or "this host"
        now = time.time()
        if now - self._hinted.get(host, 0) < _HINT_EVERY:
            return
        self._hinted[host] = now
        ca = f"{ctx.options.confdir}/mitmproxy-ca-cert.pem"
        logger.warning(
            "cliproxy: a client refused the proxy's certificate for %s. Make it trust %s: "
            "SSL_CERT_FILE for Python/httpx tools, NODE_EXTRA_CA_CERTS for Node tools (Claude Code, Amp, opencode), "
            "CODEX_CA_CERTIFICATE for the Codex CLI; `cliproxy env` prints ready-to-paste settings.",
            host,
            ca,
        )
