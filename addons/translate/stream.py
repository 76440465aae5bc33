"""Reading the Codex backend's SSE stream: the output collector and the base of every stream translator.

A translator is a per-flow callable `(bytes) -> list[bytes]`: mitmproxy hands it raw upstream body
chunks and a final `b""`, and sends what it returns to the client. Translators never raise: a bug
or a malformed event becomes a terminal error frame in the client's format.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from cliproxy.addons.translate import errors
from cliproxy.addons.translate.limits import Limiter
from cliproxy.addons.translate.sse import COMMENT, JSON_STRING, KEEPALIVE, SSEEvent, SSEParser, delta_literal, dumps, literal_text

logger = logging.getLogger(__name__)
_decode = json.JSONDecoder().decode  # event data is UTF-8 by the SSE spec

TERMINAL_OK = ("response.completed", "response.incomplete")
TERMINAL_FAIL = ("response.failed", "error")
_COLLECTED = frozenset(("response.created", "response.in_progress", "response.output_item.done") + TERMINAL_OK + TERMINAL_FAIL)
_TEXT_DELTA = "response.output_text.delta"
#: A whole text-delta frame exactly as the backend writes it (compact, or with json.dumps's spaces): every
#: member is matched, so the `delta` string (a JSON literal) is the object's own, and nothing else in the
#: event is left unread. Groups: `seq` (sequence_number, when present), `item` (item_id), `index`
#: (output_index), `delta`. Any other form of the event (another key order, logprobs, escapes in the id)
#: is not matched and is parsed as usual.
TEXT_DELTA_FRAME = re.compile(
    rb'event: response\.output_text\.delta\ndata: \{"type": ?"response\.output_text\.delta", ?(?:"sequence_number": ?(?P<seq>[0-9]+), ?)?'
    rb'"item_id": ?"(?P<item>[A-Za-z0-9_-]*)", ?"output_index": ?(?P<index>[0-9]+), ?"content_index": ?[0-9]+, ?"delta": ?(?P<delta>'
    + JSON_STRING
    + rb')(?:, ?"logprobs": ?\[\])?(?:, ?"obfuscation": ?"[A-Za-z0-9+/=_-]*")?\}\n\n'
)
#: events a `Limiter` reads: a message item starts, its text grows, its text is complete
_LIMITED = frozenset(("response.output_item.added", _TEXT_DELTA, "response.output_text.done", "response.content_part.done"))


class Collector:
    """Keeps what is needed to rebuild the final `response` object of a Codex stream."""

    __slots__ = ("response", "items", "usage", "status", "error", "terminal", "ended_locally", "stop_sequence")

    def __init__(self) -> None:
        self.response: dict[str, Any] = {}
        self.items: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.status: str | None = None
        self.error: errors.ProxyError | None = None
        self.terminal = False
        self.ended_locally: str | None = None  # "stop" | "length": cliproxy ended the answer at a client-set limit
        self.stop_sequence: str | None = None  # the client's stop sequence that ended it

    def end_locally(self, limiter: Limiter) -> None:
        """End the answer where `limiter` stopped it: the message being written becomes an item with the
        text that was sent, and the answer is complete (`stop`) or incomplete (`max_output_tokens`)."""
        text = "".join(limiter.item_text)
        if limiter.item_id is not None or text:
            index = limiter.output_index if isinstance(limiter.output_index, int) else len(self.items)
            part = {"type": "output_text", "annotations": [], "text": text}
            self.items[index] = {
                "id": limiter.item_id or f"msg_{index}",
                "type": "message",
                "role": "assistant",
                "status": "completed" if limiter.ended == "stop" else "incomplete",
                "content": [part],
            }
        self.response["output"] = []  # rebuilt from the items
        if limiter.ended == "length":
            self.status = self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        else:
            self.status = self.response["status"] = "completed"
        self.usage = self.response["usage"] = limiter.usage()
        self.ended_locally, self.stop_sequence = limiter.ended, limiter.stop_sequence
        self.terminal = True

    def add(self, kind: str, ev: dict[str, Any]) -> None:
        if kind == "response.output_item.done":
            item = ev.get("item")
            if isinstance(item, dict):
                index = ev.get("output_index")
                self.items[index if isinstance(index, int) else len(self.items)] = item
        elif kind in TERMINAL_FAIL:
            self.error = errors.from_stream_failure(ev)
            self.terminal = True
            self.status = "failed"
        elif isinstance(ev.get("response"), dict):
            resp = ev["response"]
            self.response.update({k: v for k, v in resp.items() if v is not None or k not in self.response})
            if kind in TERMINAL_OK:
                self.terminal = True
                self.status = resp.get("status") or ("completed" if kind == "response.completed" else "incomplete")
                if isinstance(resp.get("usage"), dict):
                    self.usage = resp["usage"]

    def output(self) -> list[dict[str, Any]]:
        """The response's output: as sent in the terminal event, else rebuilt from `output_item.done`."""
        sent = self.response.get("output")
        if isinstance(sent, list) and sent:
            return sent
        out = []
        for n, (_, item) in enumerate(sorted(self.items.items())):
            if "id" not in item and item.get("type") != "reasoning":
                item = {**item, "id": f"item_{n}"}
            out.append(item)
        return out

    def final_response(self) -> dict[str, Any]:
        resp = dict(self.response)
        resp["output"] = self.output()
        resp.setdefault("object", "response")
        resp.setdefault("status", self.status or "completed")
        usage = dict(self.usage or resp.get("usage") or {})
        if usage:
            usage.setdefault("input_tokens_details", {"cached_tokens": 0})
            usage.setdefault("output_tokens_details", {"reasoning_tokens": 0})
            resp["usage"] = usage
        return resp


def disconnected_error() -> errors.ProxyError:
    return errors.ProxyError(
        408,
        "stream error: stream disconnected before completion: stream closed before response.completed",
        "server_error",
        "stream_disconnected",
    )


class CodexStream:
    """Base translator: parses SSE incrementally, feeds the collector, dispatches events to `on_event`."""

    #: event types whose JSON the subclass needs (others arrive with `ev=None` when not collected)
    WANTS: frozenset[str] = frozenset()
    #: forward upstream keep-alive comments to the client
    FORWARD_KEEPALIVE = True
    #: a broken upstream connection ends the stream through `__call__(b"")` (see addons/mitm/upstream_failures.py)
    ends_on_upstream_error = True
    #: takes all the body bytes of one upstream read in one call (see addons/mitm/stream_reads.py)
    joins_reads = True
    #: delta event types the subclass can translate from the raw `delta` literal (`on_raw_delta`)
    RAW_DELTAS: frozenset[str] = frozenset()
    #: the subclass translates runs of whole text-delta frames itself (`on_text_run`)
    TEXT_RUNS = False

    def __init__(self, limits: dict[str, Any] | None = None) -> None:
        self.limiter = Limiter.from_options(limits)  # the client's stop sequences and token limit, if any
        self.parser = SSEParser()
        self.collector = Collector()
        self.finished = False  # a terminal frame has been sent to the client
        self.events = 0
        self.first_output_at: float | None = None
        self.last_input_at = time.monotonic()  # when upstream bytes last arrived (for the silence deadline)
        self.sent: bytearray | None = None  # a copy of the client output, when `keep_output()` was called

    def keep_output(self) -> None:
        """Keep a copy of what the client is sent (for inspection tools); costs memory."""
        self.sent = bytearray()

    # -- mitmproxy entry point ---------------------------------------------------------------
    def __call__(self, data: bytes) -> list[bytes]:
        self.last_input_at = time.monotonic()
        out: list[bytes] = []
        try:
            if data:
                dispatch = self._dispatch
                run = self.on_text_run if self.TEXT_RUNS and (self.limiter is None or not self.limiter.stop) else None
                self.parser.feed_into(data, lambda ev: dispatch(ev, out), None if run is None else lambda chunk, pos: run(chunk, pos, out))
            else:
                for ev in self.parser.close():
                    self._dispatch(ev, out)
            if not data and not self.finished:
                self.finished = True
                out.extend(self.on_end(self.collector.error or disconnected_error()))
        except Exception as exc:  # never let an exception drop a chunk silently
            logger.exception("cliproxy: stream translation failed")
            if not self.finished:
                self.finished = True
                out.extend(
                    self.on_end(
                        errors.ProxyError(
                            502, f"cliproxy could not translate the upstream stream: {exc}", "server_error", "translation_error"
                        )
                    )
                )
        if not out:
            return out
        if self.first_output_at is None:
            self.first_output_at = time.monotonic()
        if len(out) > 1:  # one chunk, so one socket write, per call: what one upstream read brought goes out together
            out = [b"".join(out)]
        if self.sent is not None:
            self.sent += out[0]
        return out

    def _dispatch(self, ev: SSEEvent, out: list[bytes]) -> None:
        if ev is COMMENT:
            if self.FORWARD_KEEPALIVE and not self.finished:
                out.append(KEEPALIVE)
            return
        if self.finished:
            return
        self.events += 1
        kind = ev.event
        if kind in self.RAW_DELTAS and (m := delta_literal(ev.data)) is not None:
            if self.limiter is None or kind != _TEXT_DELTA:  # only text deltas are limited
                if (chunk := self.on_raw_delta(kind, ev.data, m)) is not None:
                    out.append(chunk)
                    return
            elif self.limiter.take(literal_text(m[1])):  # released whole, and booked: not limited again below
                if (chunk := self.on_raw_delta(kind, ev.data, m)) is not None:
                    out.append(chunk)
                elif (parsed := self._payload(ev)) is not None:
                    self._deliver(kind, parsed, ev, out)
                return
        payload: dict[str, Any] | None = None
        if kind is None or kind == "message" or kind in _COLLECTED or kind in self.WANTS or (self.limiter and kind in _LIMITED):
            if (payload := self._payload(ev)) is None:
                return
            if kind is None or kind == "message":
                kind = str(payload.get("type", ""))
        if self.limiter is not None and payload is not None:
            for kept_kind, kept, kept_ev in self._limited(self.limiter, kind, payload, ev):
                self._deliver(kept_kind, kept, kept_ev, out)
                if self.finished:
                    return
            if self.limiter.ended:
                self.collector.end_locally(self.limiter)
                self.finished = True
                out.extend(self.on_end(None))
            return
        self._deliver(kind, payload, ev, out)

    @staticmethod
    def _payload(ev: SSEEvent) -> dict[str, Any] | None:
        """The event's JSON object; None for `[DONE]`, data that is not JSON (logged) or not an object."""
        if ev.data == b"[DONE]":
            return None
        try:
            parsed = _decode(ev.data.decode())
        except ValueError:
            logger.warning("cliproxy: ignoring an upstream event whose data is not JSON")
            return None
        return parsed if isinstance(parsed, dict) else None

    def _deliver(self, kind: str, payload: dict[str, Any] | None, ev: SSEEvent, out: list[bytes]) -> None:
        if payload is not None and kind in _COLLECTED:
            self.collector.add(kind, payload)
        out.extend(self.on_event(kind, payload, ev))
        if self.collector.terminal:
            self.finished = True
            out.extend(self.on_end(self.collector.error))

    @staticmethod
    def _limited(limiter: Limiter, kind: str, payload: dict[str, Any], ev: SSEEvent):
        """The events to handle instead of this one: text deltas as far as the client's limits allow
        (re-encoded when cut), held text released before the item's text is complete."""
        if kind == "response.output_item.added":
            item = payload.get("item")
            if isinstance(item, dict) and item.get("type") == "message":
                limiter.begin(item.get("id") if isinstance(item.get("id"), str) else None, payload.get("output_index"))
        elif kind == _TEXT_DELTA:
            delta = payload.get("delta")
            if isinstance(delta, str):
                sent = limiter.text(delta)
                if sent != delta:
                    if not sent:
                        return
                    payload = {**payload, "delta": sent}
                    ev = SSEEvent(ev.event, dumps(payload))
        elif kind in ("response.output_text.done", "response.content_part.done", "response.output_item.done"):
            if held := limiter.flush():
                delta = {
                    "type": _TEXT_DELTA,
                    "item_id": payload.get("item_id", limiter.item_id),
                    "output_index": payload.get("output_index"),
                    "content_index": payload.get("content_index", 0),
                    "delta": held,
                }
                yield _TEXT_DELTA, delta, SSEEvent(_TEXT_DELTA, dumps(delta))
            if limiter.ended:
                return
        yield kind, payload, ev

    # -- to implement ---------------------------------------------------------------------------
    def on_text_run(self, data: bytes, pos: int, out: list[bytes]) -> int:
        """Translate the whole text-delta frames that start at `pos` of `data` (see `TEXT_DELTA_FRAME`)
        straight into `out`, as `on_raw_delta` would one by one; returns where they end (`pos`: none taken).
        With a limiter, a frame goes only once `self.limiter.take()` released its text whole."""
        return pos

    def on_raw_delta(self, kind: str, data: bytes, delta: re.Match[bytes]) -> bytes | None:
        """The client frame for a `RAW_DELTAS` event, built from its delta's JSON literal (`delta[1]`; see
        `sse.delta_literal`), or None to have the event parsed and handed to `on_event` as usual.
        Must give what `on_event` would (the same JSON) and keep the same state."""
        return None

    def on_event(self, kind: str, ev: dict[str, Any] | None, raw: SSEEvent) -> list[bytes]:
        return []

    def on_end(self, error: errors.ProxyError | None) -> list[bytes]:
        """The stream is over: `error` is None after a successful terminal event."""
        return []


def collect(body: bytes, limits: dict[str, Any] | None = None) -> Collector:
    """Run a whole buffered SSE body through a collector (non-stream clients), ending it at the client's limits."""
    if limits:
        watch = CodexStream(limits)
        watch(body)
        if not watch.finished:
            watch(b"")
        return watch.collector
    parser = SSEParser()
    collector = Collector()
    for ev in [*parser.feed(body), *parser.close()]:
        if ev is COMMENT or ev.data == b"[DONE]":
            continue
        try:
            payload = _decode(ev.data.decode())
        except ValueError:
            continue
        if not isinstance(payload, dict):
            continue
        kind = ev.event if ev.event and ev.event != "message" else str(payload.get("type", ""))
        if kind in _COLLECTED:
            collector.add(kind, payload)
            if collector.terminal:
                break
    return collector
