"""Addon: what mitmweb and mitmdump show of cliproxy's flows.

- `flow.comment`: route, client model → upstream model, effort, account, usage, latency, failover;
  failures are marked.
- Secrets are masked on the stored flow once the request has gone upstream (what was sent is
  unchanged): mitmweb and saved flows never hold a token. mitmweb reads flows at `requestheaders`,
  `response` and `error`, all outside the window in which the token sits on the request.
- A content view renders SSE bodies (Codex, OpenAI chunks, Anthropic events) as a conversation;
  run with `--set store_streamed_bodies=true` to keep streamed bodies.
- A hint in the log when a client does not trust the mitmproxy CA.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import contentviews, ctx, http, tls
from mitmproxy.contentviews import Contentview, Metadata

from cliproxy.addons.mitm.flowstate import FlowState, state
from cliproxy.addons.translate.conversation import render

logger = logging.getLogger(__name__)

SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "cookie", "proxy-authorization")
_HINT_EVERY = 300.0


_SECRET_NAMES = frozenset(n.encode() for n in SECRET_HEADERS)
_REDACTED = "…(redacted)".encode()


def _masked(value: bytes) -> bytes:
    return value.split(b" ", 1)[0] + b" " + _REDACTED if b" " in value else _REDACTED


def mask_headers(headers: http.Headers) -> None:
    """Replace secret header values by a marker that keeps the scheme (`Bearer …`); one pass over the fields."""
    fields = headers.fields
    if any(k.lower() in _SECRET_NAMES for k, _ in fields):
        headers.fields = tuple((k, _masked(v)) if k.lower() in _SECRET_NAMES else (k, v) for k, v in fields)


def comment(st: FlowState) -> str:
    parts = [st.get("route", "?")]
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
        timing = f"{time.time() - st['t0']:.2f}s"
        if st.get("t_headers"):
            timing = f"ttfb {st['t_headers'] - st['t0']:.2f}s · {timing}"
        parts.append(timing)
    if st.get("failover"):
        parts.append(
            f"failover ×{st['failover']} ({' → '.join(st.get('tried_labels', []))})"
            if st.get("tried_labels")
            else f"failover ×{st['failover']}"
        )
    if st.get("error"):
        parts.append(f"✗ {st['error']}")
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


class SSEConversation(Contentview):
    """Shows an event stream as the conversation it carries."""

    name = "SSE conversation"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        return render(data)

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        return 2 if metadata.content_type == "text/event-stream" else -1


class FlowNotes:
    name = "cliproxy_notes"

    def __init__(self) -> None:
        self._hinted: dict[str, float] = {}

    def load(self, loader) -> None:
        contentviews.add(SSEConversation())

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None:
            return
        st.setdefault("t_headers", time.time())
        mask_headers(flow.request.headers)

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
        flow.comment = comment(st)
        if st.get("error"):
            flow.marked = ":warning:"

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
