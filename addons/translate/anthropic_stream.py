"""Codex Responses → Anthropic Messages answers: the stream translator and non-stream aggregation.

Stream (`MessagesStream`): `message_start` as soon as `response.created` arrives (with a local
estimate of the input tokens, and the client's own model name: Claude Code drops thinking blocks of
"other" models from the history), then `content_block_start/delta/stop` for thinking (summary deltas,
then a `signature_delta` carrying the reasoning item's `encrypted_content`), text and tool_use
(`input_json_delta`). Blocks never interleave: an item that starts while another is open is
buffered and sent when the open one ends. Then `message_delta` (stop reason, usage with
`input_tokens` = input − cached and `cache_read_input_tokens`) and `message_stop`; failures and cut
streams end with `event: error`.

Pings: an upstream keep-alive comment becomes `event: ping`; and when upstream events keep
arriving without producing client output (a long reasoning phase without summaries, web search
progress) for `PING_AFTER` seconds, one ping is sent. So pings are bounded by upstream activity: at
most one per keep-alive and one per `PING_AFTER` seconds. (A fully silent upstream cannot be
covered from here: the translator only runs when bytes arrive.)
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cliproxy.addons.translate import errors, images
from cliproxy.addons.translate.anthropic import safe_id
from cliproxy.addons.translate.sse import COMMENT, SSEEvent, encode, is_utf8, literal_text
from cliproxy.addons.translate.stream import TEXT_DELTA_FRAME, CodexStream, Collector

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
#: The head of a content_block_delta frame as `encode` writes it, up to the delta's text (%d: the block index).
_TEXT_DELTA_AT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":'
_THINKING_DELTA_AT = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"thinking_delta","thinking":'
)
# Members of an event head that holds no backslash (see sse.delta_literal): an int output_index, a string item_id.
_OUTPUT_INDEX = re.compile(rb'"output_index"[ \t\r\n]*:[ \t\r\n]*(-?[0-9]+)[ \t\r\n]*,')
_ITEM_ID = re.compile(rb'"item_id"[ \t\r\n]*:[ \t\r\n]*"([^"]*)"')
_IDS = re.compile(rb'"item_id": ?"([^"]*)", ?"output_index": ?(-?[0-9]+),')  # the backend's order: one search


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def stop_reason(status: str | None, reason: str | None, tool_used: bool, refused: bool = False, stop_sequence: str | None = None) -> str:
    if stop_sequence is not None:
        return "stop_sequence"
    if status == "incomplete":
        if reason in ("max_output_tokens", "max_tokens"):
            return "max_tokens"
        if reason == "content_filter":
            return "refusal"
    if tool_used:
        return "tool_use"
    return "refusal" if refused else "end_turn"


def usage_of(usage: dict[str, Any] | None) -> dict[str, int]:
    """Anthropic usage: `input_tokens` excludes cached tokens, which are `cache_read_input_tokens`."""
    usage = _dict(usage)
    total = _int(usage.get("input_tokens"))
    cached = _int(_dict(usage.get("input_tokens_details")).get("cached_tokens"))
    return {
        "input_tokens": max(0, total - cached),
        "output_tokens": _int(usage.get("output_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _args_input(arguments: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _message_text(item: dict[str, Any]) -> tuple[str, bool]:
    """A message item's text, and whether it holds a refusal."""
    texts, refused = [], False
    for part in _list(item.get("content")):
        if isinstance(part, dict) and part.get("type") == "output_text":
            texts.append(_str(part.get("text")))
        elif isinstance(part, dict) and part.get("type") == "refusal":
            texts.append(_str(part.get("refusal")))
            refused = True
    return "".join(texts), refused


def _summary_text(item: dict[str, Any]) -> str:
    return "\n\n".join(s["text"] for s in _list(item.get("summary")) if isinstance(s, dict) and _str(s.get("text")))


def _web_search_blocks(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `web_search_call` item as Anthropic's server_tool_use and web_search_tool_result blocks."""
    action = _dict(item.get("action"))
    tool_id = "srvtoolu_" + safe_id(_str(item.get("id")) or "web_search")[:55]
    query = _str(action.get("query"))
    results = [
        {"type": "web_search_result", "url": s["url"], "title": _str(s.get("title")) or s["url"], "encrypted_content": "", "page_age": None}
        for s in _list(action.get("sources"))
        if isinstance(s, dict) and isinstance(s.get("url"), str)
    ]
    use = {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}}
    return use, {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results}


def image_block(item: dict[str, Any]) -> dict[str, Any]:
    """A generated image as an Anthropic `image` block (base64 source); one that failed (refused by the
    safety system) as a text block that says so, so that it is never dropped silently."""
    got = images.image_of(item)
    if got is None:
        return {"type": "text", "text": images.NOT_GENERATED}
    return {"type": "image", "source": {"type": "base64", "media_type": got[0], "data": got[1]}}


@dataclass(slots=True, eq=False)
class _Block:
    """One output item on its way to the client as one (or, for web search, two) content blocks."""

    kind: str  # thinking | text | tool_use | web_search | image
    started: bool = False
    done: bool = False
    streamed: bool = False  # content deltas were sent (or queued)
    parts: int = 0  # reasoning summary parts seen
    index: int = -1
    signature: str = ""  # the reasoning item's encrypted_content seen at `added`
    pending: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)  # ops held while another block is open


class MessagesStream(CodexStream):
    """Codex events → Anthropic Messages SSE events."""

    WANTS = frozenset(
        (
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_text.delta",
            "response.output_text.delta",
            "response.refusal.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
        )
    )
    RAW_DELTAS = frozenset(("response.output_text.delta", "response.reasoning_summary_text.delta", "response.reasoning_text.delta"))
    TEXT_RUNS = True
    FORWARD_KEEPALIVE = False  # keep-alives become `event: ping` (see `_dispatch`)
    #: seconds of upstream activity without client output before a ping is sent
    PING_AFTER = 5.0

    def __init__(
        self,
        model: str,
        tool_names: dict[str, str] | None = None,
        thinking: bool = True,
        input_tokens: int = 0,
        client_model: str = "",
        limits: dict[str, Any] | None = None,
        clock=time.monotonic,
    ) -> None:
        super().__init__(limits)
        self.model = model
        self.client_model = client_model
        self.tool_names = tool_names or {}
        self.thinking = thinking
        self.input_tokens = input_tokens
        self.clock = clock
        self._started = False
        self._queue: deque[_Block] = deque()  # the head is the block being sent; the rest wait
        self._blocks: dict[Any, _Block] = {}  # output_index / item id -> block
        self._next_index = 0
        self._tool_used = False
        self._refused = False
        self._last_sent = clock()

    # -- mitmproxy entry point: add idle pings ---------------------------------------------
    def __call__(self, data: bytes) -> list[bytes]:
        out = super().__call__(data)
        now = self.clock()
        if out:
            self._last_sent = now
        elif data and self._started and not self.finished and now - self._last_sent >= self.PING_AFTER:
            self._last_sent = now
            out = [PING]
            if self.sent is not None:
                self.sent += PING
        return out

    def _dispatch(self, ev: SSEEvent, out: list[bytes]) -> None:
        if ev is COMMENT:
            if self._started and not self.finished:
                out.append(PING)
            return
        super()._dispatch(ev, out)

    # -- framing -------------------------------------------------------------------------------
    def _message_start(self, ev: dict[str, Any] | None) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        resp = _dict(_dict(ev).get("response"))
        message: dict[str, Any] = {
            "id": _str(resp.get("id")) or f"msg_cliproxy_{int(time.time() * 1000)}",
            "type": "message",
            "role": "assistant",
            "model": self.client_model or _str(resp.get("model")) or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return [encode({"type": "message_start", "message": message}, "message_start")]

    def _render(self, block: _Block, op: str, payload: dict[str, Any] | None) -> bytes:
        if op == "start":
            block.index = self._next_index
            self._next_index += 1
            return encode({"type": "content_block_start", "index": block.index, "content_block": payload}, "content_block_start")
        if op == "delta":
            return encode({"type": "content_block_delta", "index": block.index, "delta": payload}, "content_block_delta")
        return encode({"type": "content_block_stop", "index": block.index}, "content_block_stop")

    def _send(self, block: _Block, op: str, payload: dict[str, Any] | None, out: list[bytes]) -> None:
        if self._queue and self._queue[0] is block:
            out.append(self._render(block, op, payload))
        else:
            block.pending.append((op, payload))

    def _start(self, block: _Block, content_block: dict[str, Any], out: list[bytes]) -> None:
        if not block.started:
            block.started = True
            self._send(block, "start", content_block, out)

    def _delta(self, block: _Block, delta: dict[str, Any], out: list[bytes]) -> None:
        block.streamed = True
        self._send(block, "delta", delta, out)

    def _finish(self, block: _Block, out: list[bytes]) -> None:
        if block.done:
            return
        if block.started:
            self._send(block, "stop", None, out)
        block.done = True
        while self._queue and self._queue[0].done:  # hand over to the next block, sending what it held
            self._queue.popleft()
            if self._queue:
                head = self._queue[0]
                out.extend(self._render(head, op, payload) for op, payload in head.pending)
                head.pending.clear()

    # -- blocks by output item -------------------------------------------------------------------
    def _keys(self, ev: dict[str, Any], item: dict[str, Any] | None = None) -> list[Any]:
        keys: list[Any] = []
        if isinstance(ev.get("output_index"), int):
            keys.append(ev["output_index"])
        item_id = _dict(item).get("id") or ev.get("item_id")
        if isinstance(item_id, str):
            keys.append(item_id)
        return keys

    def _block(self, kind: str, ev: dict[str, Any], item: dict[str, Any] | None = None) -> _Block:
        """The block of the event's output item, created (and queued) on first sight."""
        keys = self._keys(ev, item)
        for key in keys:
            if key in self._blocks:
                return self._blocks[key]
        block = _Block(kind)
        self._queue.append(block)
        for key in keys:
            self._blocks[key] = block
        return block

    def _known(self, ev: dict[str, Any]) -> _Block | None:
        for key in self._keys(ev):
            if key in self._blocks:
                return self._blocks[key]
        return None

    # -- events ----------------------------------------------------------------------------------
    def on_text_run(self, data: bytes, pos: int, out: list[bytes]) -> int:
        if not self._started or self.finished or (m := TEXT_DELTA_FRAME.match(data, pos)) is None:
            return pos
        match, item, index, head, n, limiter = TEXT_DELTA_FRAME.match, None, None, b"", 0, self.limiter
        while m is not None:
            literal = m["delta"]
            if len(literal) > 2:  # an empty delta sends nothing
                if not literal.isascii() and not is_utf8(literal):
                    break  # parsed as usual: an event that is not UTF-8 is dropped
                if m["item"] != item or m["index"] != index:  # the block, found as `_block` finds it (first frame, or another item)
                    blocks = self._blocks
                    block = blocks.get(int(m["index"])) or blocks.get(m["item"].decode())
                    if block is None or not block.started or not self._queue or self._queue[0] is not block:
                        break
                    item, index, head = m["item"], m["index"], _TEXT_DELTA_AT % block.index
                    block.streamed = True
                if limiter is not None and not limiter.take(literal_text(literal)):
                    break  # the limiter cuts or holds it: parsed as usual
                out.append(head + literal + b"}}\n\n")
            elif limiter is not None and not limiter.take(""):
                break
            n += 1
            pos = m.end()
            m = match(data, pos)
        self.events += n
        return pos

    def on_raw_delta(self, kind: str, data: bytes, delta: re.Match[bytes]) -> bytes | None:
        # What `on_event` sends for a non-empty text (thinking) delta of the block being sent, once that
        # block has started: one content_block_delta frame with the delta's literal as it came. The block
        # is found as `_block` finds it, from the output_index and item_id written before the delta.
        literal = delta[1]
        if not self._started or len(literal) == 2 or (kind != "response.output_text.delta" and not self.thinking):
            return None
        end = delta.start()  # the members before the delta: no backslash in them (see sse.delta_literal)
        if (ids := _IDS.search(data, 0, end)) is not None:
            index, item = ids[2], ids[1]
        elif (found := _OUTPUT_INDEX.search(data, 0, end)) is not None and (named := _ITEM_ID.search(data, 0, end)) is not None:
            index, item = found[1], named[1]
        else:
            return None
        if data.count(b'"output_index"', 0, end) != 1 or data.count(b'"item_id"', 0, end) != 1:
            return None  # repeated: a parse would keep the last
        blocks = self._blocks
        block = blocks.get(int(index)) or blocks.get(item.decode())
        if block is None or not block.started or not self._queue or self._queue[0] is not block:
            return None
        block.streamed = True
        if kind == "response.output_text.delta":
            return _TEXT_DELTA_AT % block.index + literal + b"}}\n\n"
        return _THINKING_DELTA_AT % block.index + literal + b"}}\n\n"

    def on_event(self, kind: str, ev: dict[str, Any] | None, raw: SSEEvent) -> list[bytes]:
        if kind in ("response.created", "response.in_progress"):
            return self._message_start(ev)
        if ev is None:
            return []
        out = self._message_start(None)
        block: _Block | None  # a new block for the deltas, a known one (or None) for the argument events
        if kind == "response.output_item.added":
            self._item_added(ev, out)
        elif kind == "response.output_item.done":
            self._item_done(ev, _dict(ev.get("item")), out)
        elif kind == "response.reasoning_summary_part.added" and self.thinking:
            block = self._block("thinking", ev)
            if block.parts and block.started:
                self._delta(block, {"type": "thinking_delta", "thinking": "\n\n"}, out)
            block.parts += 1
            self._start(block, {"type": "thinking", "thinking": "", "signature": ""}, out)
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta") and self.thinking:
            if delta := _str(ev.get("delta")):
                block = self._block("thinking", ev)
                self._start(block, {"type": "thinking", "thinking": "", "signature": ""}, out)
                self._delta(block, {"type": "thinking_delta", "thinking": delta}, out)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            self._refused |= kind == "response.refusal.delta"
            if delta := _str(ev.get("delta")):
                block = self._block("text", ev)
                self._start(block, {"type": "text", "text": ""}, out)
                self._delta(block, {"type": "text_delta", "text": delta}, out)
        elif kind == "response.function_call_arguments.delta":
            block = self._known(ev)
            if block is not None and block.kind == "tool_use" and _str(ev.get("delta")):
                self._delta(block, {"type": "input_json_delta", "partial_json": ev["delta"]}, out)
        elif kind == "response.function_call_arguments.done":
            block = self._known(ev)
            if block is not None and block.kind == "tool_use" and not block.streamed and _str(ev.get("arguments")):
                self._delta(block, {"type": "input_json_delta", "partial_json": ev["arguments"]}, out)
        return out

    def _item_added(self, ev: dict[str, Any], out: list[bytes]) -> None:
        item = _dict(ev.get("item"))
        kind = item.get("type")
        if kind == "reasoning" and self.thinking:
            self._block("thinking", ev, item).signature = _str(item.get("encrypted_content"))
        elif kind == "message":
            self._block("text", ev, item)
        elif kind == "function_call":
            self._tool_start(self._block("tool_use", ev, item), item, out)
        elif kind == "web_search_call":
            self._block("web_search", ev, item)

    def _tool_start(self, block: _Block, item: dict[str, Any], out: list[bytes]) -> None:
        if block.started:
            return
        self._tool_used = True
        name = _str(item.get("name"))
        tool_id = safe_id(_str(item.get("call_id")) or _str(item.get("id")) or f"toolu_{self._next_index}")
        self._start(block, {"type": "tool_use", "id": tool_id, "name": self.tool_names.get(name, name), "input": {}}, out)
        self._send(block, "delta", {"type": "input_json_delta", "partial_json": ""}, out)

    def _item_done(self, ev: dict[str, Any], item: dict[str, Any], out: list[bytes]) -> None:
        kind = item.get("type")
        if kind == "reasoning":
            if not self.thinking:
                return
            block = self._block("thinking", ev, item)
            signature = _str(item.get("encrypted_content")) or block.signature
            text = "" if block.streamed else _summary_text(item)
            if signature or text or block.started:
                self._start(block, {"type": "thinking", "thinking": "", "signature": ""}, out)
                if text:
                    self._delta(block, {"type": "thinking_delta", "thinking": text}, out)
                if signature:
                    self._send(block, "delta", {"type": "signature_delta", "signature": signature}, out)
            self._finish(block, out)
        elif kind == "message":
            block = self._block("text", ev, item)
            text, refused = _message_text(item)
            self._refused |= refused
            if not block.streamed and text:
                self._start(block, {"type": "text", "text": ""}, out)
                self._delta(block, {"type": "text_delta", "text": text}, out)
            self._finish(block, out)
        elif kind == "function_call":
            block = self._block("tool_use", ev, item)
            self._tool_start(block, item, out)
            if not block.streamed and _str(item.get("arguments")):
                self._delta(block, {"type": "input_json_delta", "partial_json": item["arguments"]}, out)
            self._finish(block, out)
        elif kind == "image_generation_call":
            block = self._block("image", ev, item)
            self._send(block, "start", image_block(item), out)
            block.started = True
            self._finish(block, out)
        elif kind == "web_search_call":
            block = self._block("web_search", ev, item)
            use, result = _web_search_blocks(item)
            query = use["input"]
            self._send(block, "start", {**use, "input": {}}, out)
            self._send(block, "delta", {"type": "input_json_delta", "partial_json": json.dumps(query, ensure_ascii=False)}, out)
            self._send(block, "stop", None, out)
            self._send(block, "start", result, out)
            block.started = True
            self._finish(block, out)
        else:
            return
        for key in self._keys(ev, item):
            self._blocks.setdefault(key, block)

    def on_end(self, error: errors.ProxyError | None) -> list[bytes]:
        if error is not None:
            return [encode(errors.anthropic_body(error), "error")]
        out = self._message_start(None)
        c = self.collector
        for n, item in enumerate(_list(c.response.get("output"))):  # items the stream never announced
            if isinstance(item, dict) and not any(k in self._blocks for k in (n, _str(item.get("id")))):
                self._item_done({"output_index": n}, item, out)
        while self._queue:
            self._finish(self._queue[0], out)
        reason = stop_reason(
            c.status, _dict(c.response.get("incomplete_details")).get("reason"), self._tool_used, self._refused, c.stop_sequence
        )
        usage = usage_of(c.usage)
        del usage["cache_creation_input_tokens"]
        out.append(
            encode(
                {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": c.stop_sequence}, "usage": usage},
                "message_delta",
            )
        )
        out.append(encode({"type": "message_stop"}, "message_stop"))
        return out


def message_from(
    collector: Collector,
    model: str,
    tool_names: dict[str, str] | None = None,
    thinking: bool = True,
    input_tokens: int = 0,
    client_model: str = "",
    limits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an Anthropic `message` object from a finished Codex stream (non-stream clients; the
    collector has already applied the client's `limits`)."""
    names = tool_names or {}
    resp = collector.final_response()
    content: list[dict[str, Any]] = []
    tool_used = refused = False
    for item in _list(resp["output"]):
        kind = _dict(item).get("type")
        if kind == "reasoning" and thinking:
            text, signature = _summary_text(item), _str(item.get("encrypted_content"))
            if text or signature:
                content.append({"type": "thinking", "thinking": text, "signature": signature})
        elif kind == "message":
            text, was_refusal = _message_text(item)
            refused |= was_refusal
            if text:
                content.append({"type": "text", "text": text})
        elif kind == "function_call":
            tool_used = True
            name = _str(item.get("name"))
            content.append(
                {
                    "type": "tool_use",
                    "id": safe_id(_str(item.get("call_id")) or _str(item.get("id")) or "toolu"),
                    "name": names.get(name, name),
                    "input": _args_input(item.get("arguments")),
                }
            )
        elif kind == "web_search_call":
            content.extend(_web_search_blocks(item))
        elif kind == "image_generation_call":
            content.append(image_block(item))
    reason = _dict(resp.get("incomplete_details")).get("reason")
    return {
        "id": _str(resp.get("id")) or f"msg_cliproxy_{int(time.time() * 1000)}",
        "type": "message",
        "role": "assistant",
        "model": client_model or _str(resp.get("model")) or model,
        "content": content,
        "stop_reason": stop_reason(collector.status, reason, tool_used, refused, collector.stop_sequence),
        "stop_sequence": collector.stop_sequence,
        "usage": usage_of(collector.usage),
    }
