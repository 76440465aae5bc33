"""Reading the Codex backend's SSE stream: the output collector and the base of every stream translator.

A translator is a per-flow callable `(bytes) -> list[bytes]`: mitmproxy hands it raw upstream body
chunks and a final `b""`, and sends what it returns to the client. Translators never raise: a bug
or a malformed event becomes a terminal error frame in the client's format.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from cliproxy.addons.translate import errors
from cliproxy.addons.translate.sse import COMMENT, KEEPALIVE, SSEEvent, SSEParser

logger = logging.getLogger(__name__)
_decode = json.JSONDecoder().decode  # event data is UTF-8 by the SSE spec

TERMINAL_OK = ("response.completed", "response.incomplete")
TERMINAL_FAIL = ("response.failed", "error")
_COLLECTED = frozenset(("response.created", "response.in_progress", "response.output_item.done") + TERMINAL_OK + TERMINAL_FAIL)


class Collector:
    """Keeps what is needed to rebuild the final `response` object of a Codex stream."""

    __slots__ = ("response", "items", "usage", "status", "error", "terminal")

    def __init__(self) -> None:
        self.response: dict[str, Any] = {}
        self.items: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.status: str | None = None
        self.error: errors.ProxyError | None = None
        self.terminal = False

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
        408, "stream error: stream disconnected before completion: stream closed before response.completed",
        "server_error", "stream_disconnected",
    )


class CodexStream:
    """Base translator: parses SSE incrementally, feeds the collector, dispatches events to `on_event`."""

    #: event types whose JSON the subclass needs (others arrive with `ev=None` when not collected)
    WANTS: frozenset[str] = frozenset()
    #: forward upstream keep-alive comments to the client
    FORWARD_KEEPALIVE = True
    #: a broken upstream connection ends the stream through `__call__(b"")` (see addons/streamfix.py)
    ends_on_upstream_error = True

    def __init__(self) -> None:
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
            events = self.parser.feed(data) if data else self.parser.close()
            for ev in events:
                self._dispatch(ev, out)
            if not data and not self.finished:
                self.finished = True
                out.extend(self.on_end(self.collector.error or disconnected_error()))
        except Exception as exc:  # never let an exception drop a chunk silently
            logger.exception("cliproxy: stream translation failed")
            if not self.finished:
                self.finished = True
                out.extend(self.on_end(errors.ProxyError(502, f"cliproxy could not translate the upstream stream: {exc}", "server_error", "translation_error")))
        if out:
            if self.first_output_at is None:
                self.first_output_at = time.monotonic()
            if self.sent is not None:
                for chunk in out:
                    self.sent += chunk
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
        payload: dict[str, Any] | None = None
        if kind is None or kind == "message" or kind in _COLLECTED or kind in self.WANTS:
            if ev.data == b"[DONE]":
                return
            try:
                parsed = _decode(ev.data.decode())
            except ValueError:
                logger.warning("cliproxy: ignoring an upstream event whose data is not JSON")
                return
            if not isinstance(parsed, dict):
                return
            payload = parsed
            if kind is None or kind == "message":
                kind = str(payload.get("type", ""))
            if kind in _COLLECTED:
                self.collector.add(kind, payload)
        out.extend(self.on_event(kind, payload, ev))
        if self.collector.terminal:
            self.finished = True
            out.extend(self.on_end(self.collector.error))

    # -- to implement ---------------------------------------------------------------------------
    def on_event(self, kind: str, ev: dict[str, Any] | None, raw: SSEEvent) -> list[bytes]:
        return []

    def on_end(self, error: errors.ProxyError | None) -> list[bytes]:
        """The stream is over: `error` is None after a successful terminal event."""
        return []


def collect(body: bytes) -> Collector:
    """Run a whole buffered SSE body through a collector (non-stream clients)."""
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
