"""Render an SSE body (Codex, OpenAI chat chunks or Anthropic events) as a readable conversation.

Used by the mitmweb/mitmdump content view; pure, so it is tested without mitmproxy.
"""

from __future__ import annotations

import json
from typing import Any

from cliproxy.addons.translate.sse import COMMENT, SSEParser


class _Transcript:
    """Collects consecutive pieces of the same kind into one line: `[kind] text…`."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []  # [kind, text]

    def add(self, kind: str, text: str) -> None:
        if not text:
            return
        if self.lines and self.lines[-1][0] == kind:
            self.lines[-1][1] += text
        else:
            self.lines.append([kind, text])

    def note(self, kind: str, text: str) -> None:
        self.lines.append([kind, text])

    def render(self) -> str:
        return "\n".join(f"[{kind}] {text}" for kind, text in self.lines)


def _usage(usage: dict[str, Any]) -> str:
    inp = usage.get("input_tokens", usage.get("prompt_tokens"))
    out = usage.get("output_tokens", usage.get("completion_tokens"))
    cached = (usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}).get(
        "cached_tokens", usage.get("cache_read_input_tokens")
    )
    reasoning = (usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    text = f"in {inp}" + (f" (cached {cached})" if cached else "") + f" · out {out}"
    return text + (f" (reasoning {reasoning})" if reasoning else "")


def _codex(t: _Transcript, kind: str, ev: dict[str, Any], calls: dict[Any, str]) -> None:
    if kind == "response.output_text.delta":
        t.add("assistant", ev.get("delta", ""))
    elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        t.add("reasoning", ev.get("delta", ""))
    elif kind == "response.output_item.added" and (ev.get("item") or {}).get("type") in ("function_call", "custom_tool_call"):
        item = ev["item"]
        calls[item.get("id")] = f"tool call {item.get('name')} ({item.get('call_id')})"
    elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
        t.add(calls.get(ev.get("item_id"), "tool call"), ev.get("delta", ""))
    elif kind in ("response.completed", "response.incomplete"):
        resp = ev.get("response") or {}
        if resp.get("usage"):
            t.note("usage", _usage(resp["usage"]))
        t.note("end", resp.get("status", kind.split(".")[-1]))
    elif kind in ("response.failed", "error"):
        err = (ev.get("response") or {}).get("error") or ev.get("error") or ev
        t.note("error", str(err.get("message", err)) if isinstance(err, dict) else str(err))


def _chat(t: _Transcript, ev: dict[str, Any], calls: dict[Any, str]) -> None:
    if "error" in ev:
        t.note("error", str((ev["error"] or {}).get("message", ev["error"])))
        return
    for choice in ev.get("choices") or []:
        delta = choice.get("delta") or {}
        t.add("reasoning", delta.get("reasoning_content") or "")
        t.add("assistant", delta.get("content") or "")
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            if fn.get("name"):
                calls[call.get("index")] = f"tool call {fn['name']} ({call.get('id')})"
            t.add(calls.get(call.get("index"), "tool call"), fn.get("arguments") or "")
        if choice.get("finish_reason"):
            t.note("finish", choice["finish_reason"])
    if ev.get("usage"):
        t.note("usage", _usage(ev["usage"]))


def _anthropic(t: _Transcript, kind: str, ev: dict[str, Any], blocks: dict[Any, str]) -> None:
    if kind == "content_block_start":
        block = ev.get("content_block") or {}
        if block.get("type") == "tool_use":
            blocks[ev.get("index")] = f"tool use {block.get('name')} ({block.get('id')})"
        else:
            blocks[ev.get("index")] = "thinking" if block.get("type") == "thinking" else "assistant"
    elif kind == "content_block_delta":
        delta = ev.get("delta") or {}
        label = blocks.get(ev.get("index"), "assistant")
        t.add(label, delta.get("text") or delta.get("thinking") or delta.get("partial_json") or "")
    elif kind == "message_delta":
        if ev.get("usage"):
            t.note("usage", _usage(ev["usage"]))
        if (ev.get("delta") or {}).get("stop_reason"):
            t.note("finish", ev["delta"]["stop_reason"])
    elif kind == "error":
        t.note("error", str((ev.get("error") or {}).get("message", ev)))


def render(data: bytes) -> str:
    """The conversation in an SSE body, one `[kind] text` line per run of the same kind."""
    t = _Transcript()
    parser = SSEParser()
    calls: dict[Any, str] = {}
    blocks: dict[Any, str] = {}
    keepalives = 0
    for ev in [*parser.feed(data), *parser.close()]:
        if ev is COMMENT:
            keepalives += 1
            continue
        if ev.data.strip() == b"[DONE]":
            t.note("done", "[DONE]")
            continue
        try:
            payload = json.loads(ev.data)
        except ValueError:
            t.note("data", ev.data.decode("utf-8", "replace")[:200])
            continue
        if not isinstance(payload, dict):
            continue
        kind = ev.event or payload.get("type") or ""
        if kind.startswith("response.") or (kind == "error" and "sequence_number" in payload):
            _codex(t, kind, payload, calls)
        elif payload.get("object") == "chat.completion.chunk" or "choices" in payload or (not ev.event and "error" in payload):
            _chat(t, payload, calls)
        else:
            _anthropic(t, kind, payload, blocks)
    if keepalives:
        t.note("keep-alive", f"{keepalives} comment(s)")
    return t.render()
