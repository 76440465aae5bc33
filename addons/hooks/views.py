"""Content views for cliproxy's flows in mitmweb and mitmdump (registered by hooks.notes).

- `cliproxy conversation` (chosen by itself for served flows and event streams): the client's request as a
  transcript (system prompt folded, messages, tool calls and results, tools offered), then the answer it got
  (text, reasoning, tool calls, images named, how it ended, tokens), with time to first byte and in all.
- `cliproxy upstream request` / `cliproxy upstream answer` (picked from the view menu, on either tab): the
  other side of the exchange, the request as rewritten for the backend and the backend's raw answer,
  error bodies included. Secrets are masked in both.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http
from mitmproxy.contentviews import Contentview, Metadata

from cliproxy.addons.mitm.flowstate import FlowState, state
from cliproxy.addons.translate.conversation import pretty_json, render, render_body, render_request, usage_line

#: Routes whose requests are client API bodies (a transcript shows them); others show the answer only.
TRANSCRIBED = frozenset(
    {"chat", "responses", "compact", "messages", "codex", "codex_compact", "amp_provider", "images_generations", "images_edits"}
)
NOT_STORED = "(the streamed answer was not stored: run mitmweb or mitmdump with --set store_streamed_bodies=true to keep it)"


def _flow_state(metadata: Metadata) -> tuple[http.HTTPFlow | None, FlowState | None]:
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return None, None
    return flow, state(flow)


def client_body(flow: http.HTTPFlow, st: FlowState) -> bytes:
    """The body the client sent: on the flow once it is answered, in the state while it runs."""
    if not st.get("shown") and st.get("client_request"):
        return st["client_request"].get("content") or b""
    return flow.request.raw_content or b""


def _seconds(st: FlowState, flow: http.HTTPFlow) -> str:
    parts = []
    t0 = st.get("t0")
    if t0 and st.get("t_headers"):
        parts.append(f"first byte after {st['t_headers'] - t0:.2f}s")
    if t0 and (answer := st.get("upstream_answer")) and answer.get("t_first_token"):
        parts.append(f"first token after {answer['t_first_token'] - t0:.2f}s")
    end = flow.response.timestamp_end if flow.response is not None else None
    if t0 and end:
        parts.append(f"{end - t0:.2f}s in all")
    return " · ".join(parts)


def transcript(flow: http.HTTPFlow, st: FlowState | None) -> str:
    """The whole exchange as the client saw it, request then answer."""
    out = []
    if st is not None and st.get("route") in TRANSCRIBED:
        req = http.Request.from_state(dict(st["client_request"])) if st.get("client_request") else flow.request
        head = f"── the client sent {req.method} {req.path.split('?')[0]}"
        if st.get("client_model"):
            model = st.get("model")
            head += f" · {st['client_model']}" + (f" → {model}" if model and model != st["client_model"] else "")
        out.append(head)
        try:
            body: Any = json.loads(client_body(flow, st) or b"null")
        except ValueError:
            body = None
        out.append(render_request(body) or "(no JSON body)")
    resp = flow.response
    if resp is not None:
        timing = _seconds(st, flow) if st is not None else ""
        out.append(f"── the answer: {resp.status_code}" + (f" · {timing}" if timing else ""))
        data = resp.raw_content
        ctype = resp.headers.get("content-type", "")
        if not data:
            out.append(NOT_STORED if "event-stream" in ctype else "(empty)")
        else:
            decoded = resp.get_content(strict=False) or b""
            text = render_body(decoded, ctype) or decoded[:2000].decode("utf-8", "replace")
            if st is not None and st.get("usage") and " · in " not in text and "[end] in " not in text:
                text += f"\n[usage] {usage_line(st['usage'])} (the upstream's count; the client was not sent one)"
            out.append(text)
    elif flow.error is not None:
        out.append(f"── no answer: {flow.error.msg}")
    else:
        out.append("── waiting for the answer…")
    return "\n".join(out)


class Conversation(Contentview):
    """The exchange as a conversation; picked by itself for cliproxy's client API flows and any event stream."""

    name = "cliproxy conversation"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow, st = _flow_state(metadata)
        if flow is None:
            return render(data)
        return transcript(flow, st)

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        flow, st = _flow_state(metadata)
        if st is not None and st.get("route") in TRANSCRIBED and not st.get("websocket"):
            return 2
        return 2 if metadata.content_type and "event-stream" in metadata.content_type else -1


def _headers_text(fields: Any) -> str:
    return "\n".join(
        f"{k.decode('utf-8', 'replace') if isinstance(k, bytes) else k}: {v.decode('utf-8', 'replace') if isinstance(v, bytes) else v}"
        for k, v in fields
    )


def _nothing_upstream(st: FlowState | None) -> str | None:
    if st is None:
        return "cliproxy did not serve this flow: it went to its host as it was (see the Request and Response tabs)."
    if st.get("images_path") == "native" and not st.get("upstream_request"):
        return "cliproxy called the backend's native image endpoint for this request; that call is not kept on the flow."
    if not st.get("upstream") and not st.get("upstream_request"):
        return "cliproxy answered this request itself: nothing was sent upstream."
    return None


def upstream_request_text(flow: http.HTTPFlow, st: FlowState | None) -> str:
    if (nothing := _nothing_upstream(st)) is not None:
        return nothing
    assert st is not None
    kept = st.get("upstream_request")
    req = http.Request.from_state(dict(kept)) if kept else flow.request  # still running: the flow holds it
    lines = [f"{req.method} {req.url}"]
    if st.get("tried_labels"):
        before = f"; tried before: {', '.join(st['tried_labels'][:-1])}" if st.get("failover") else ""
        lines.append(f"(account {st['tried_labels'][-1]}{before})")
    lines += [_headers_text(req.headers.items(multi=True)), "", pretty_json(req.raw_content or b"")]
    return "\n".join(lines)


def upstream_answer_text(flow: http.HTTPFlow, st: FlowState | None) -> str:
    if (nothing := _nothing_upstream(st)) is not None:
        return nothing
    assert st is not None
    answer = st.get("upstream_answer")
    if answer is None:
        return "(no upstream answer yet)" if flow.response is None and flow.error is None else "(the upstream did not answer)"
    lines = [f"{answer['status']}", _headers_text(answer["headers"]), ""]
    body = answer.get("body") or b""
    ctype = next((v for k, v in answer["headers"] if k.lower() == "content-type"), "")
    if not body and answer.get("streamed"):
        lines.append(NOT_STORED)
    elif "event-stream" in ctype:
        lines.append(body.decode("utf-8", "replace"))
    else:
        lines.append(pretty_json(body))
    if answer.get("cut"):
        lines.append("… (cut: only the first 4 MiB are kept)")
    return "\n".join(lines)


class UpstreamRequest(Contentview):
    """The request as cliproxy sent it to the backend (model, instructions, tools as rewritten; the account)."""

    name = "cliproxy upstream request"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow, st = _flow_state(metadata)
        return upstream_request_text(flow, st) if flow is not None else "(not an HTTP flow)"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        return -1  # picked from the menu


class UpstreamAnswer(Contentview):
    """The backend's answer as it arrived: status, headers, raw events or error JSON."""

    name = "cliproxy upstream answer"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow, st = _flow_state(metadata)
        return upstream_answer_text(flow, st) if flow is not None else "(not an HTTP flow)"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        return -1  # picked from the menu


VIEWS = (Conversation, UpstreamRequest, UpstreamAnswer)
