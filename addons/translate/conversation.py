"""Render an exchange as a readable conversation: the client's request (chat, Responses or Anthropic body)
and its answer (an SSE body of Codex, OpenAI chat chunks or Anthropic events, or a JSON answer).

Used by the mitmweb/mitmdump content views (hooks.views); pure, so it is tested without mitmproxy.
Long texts are folded (a Claude Code system prompt is 9 KB on one line): a transcript is for reading,
the raw body stays one click away in mitmweb's JSON and Raw views.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from cliproxy.addons.translate.sse import COMMENT, SSEParser

#: Texts longer than this are folded to their head and tail in the request side of a transcript.
FOLD_AT = 600
#: System prompts and instructions are context, rarely what a user looks for: folded sooner.
FOLD_SYSTEM_AT = 200
#: An image inlined as a data URL (Chat answers carry generated images so); named, never shown as text.
DATA_URL = re.compile(r"data:image/([a-z+.-]+);base64,([A-Za-z0-9+/=]{16,})")


def _name_data_urls(text: str) -> str:
    return DATA_URL.sub(lambda m: f"(image/{m[1]}, {len(m[2]) * 3 // 4:,} bytes)", text)


def fold(text: str, limit: int = FOLD_AT) -> str:
    """`text` on one line, its middle cut when it is longer than `limit`, saying how much was left out."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    keep = max(limit // 2 - 10, 20)
    return f"{flat[:keep]} … ({len(flat) - 2 * keep:,} chars folded) … {flat[-keep:]}"


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
        return "\n".join(f"[{kind}] {_name_data_urls(text)}" for kind, text in self.lines)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_line(usage: dict[str, Any]) -> str:
    """Token counts the way the comment states them: input in all (cached part), output (reasoning part).

    Anthropic's `input_tokens` leaves out the cache reads (`cache_read_input_tokens`): both are named, so the
    sum matches the Codex and OpenAI figure that the flow comment shows."""
    cached_read = _int(usage.get("cache_read_input_tokens"))
    details_in = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    details_out = usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}
    inp = _int(usage.get("input_tokens", usage.get("prompt_tokens")))
    out = _int(usage.get("output_tokens", usage.get("completion_tokens")))
    reasoning = (
        _int(details_out.get("reasoning_tokens")) if details_out and isinstance(details_out, dict) else _int(usage.get("reasoning_tokens"))
    )
    if cached_read is not None:  # Anthropic
        text = f"in {(inp or 0) + cached_read} ({inp or 0} new + {cached_read} cached; Anthropic's input_tokens counts the new ones)"
    else:
        cached = _int(details_in.get("cached_tokens")) if details_in and isinstance(details_in, dict) else _int(usage.get("cached_tokens"))
        text = f"in {inp if inp is not None else '?'}" + (f" ({cached} cached)" if cached else "")
    text += f" · out {out if out is not None else '?'}"
    return text + (f" ({reasoning} reasoning)" if reasoning else "")


def _image_note(result: Any) -> str:
    """An image result named by size and kind, never its base64 text."""
    if not isinstance(result, str) or not result:
        return "(no image)"
    try:
        raw = base64.b64decode(result[:64] + "=" * (-len(result[:64]) % 4), validate=False)
    except ValueError:
        raw = b""
    kind = (
        "PNG" if raw.startswith(b"\x89PNG") else "JPEG" if raw.startswith(b"\xff\xd8") else "WebP" if raw.startswith(b"RIFF") else "image"
    )
    return f"{kind}, {len(result) * 3 // 4:,} bytes"


class _Answer:
    """State across the events of one answer stream."""

    def __init__(self) -> None:
        self.t = _Transcript()
        self.calls: dict[Any, str] = {}
        self.blocks: dict[Any, str] = {}
        self.usage: dict[str, Any] = {}
        self.end: str | None = None
        self.anthropic_input: dict[str, Any] = {}

    def codex(self, kind: str, ev: dict[str, Any]) -> None:
        t = self.t
        if kind == "response.output_text.delta":
            t.add("assistant", ev.get("delta", ""))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            t.add("reasoning", ev.get("delta", ""))
        elif kind == "response.output_item.added" and (ev.get("item") or {}).get("type") in ("function_call", "custom_tool_call"):
            item = ev["item"]
            self.calls[item.get("id")] = f"tool call {item.get('name')} ({item.get('call_id')})"
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            t.add(self.calls.get(ev.get("item_id"), "tool call"), ev.get("delta", ""))
        elif kind == "response.output_item.done" and (ev.get("item") or {}).get("type") == "image_generation_call":
            t.note("image", _image_note(ev["item"].get("result")))
        elif kind in ("response.completed", "response.incomplete"):
            resp = ev.get("response") or {}
            self.usage = resp.get("usage") or self.usage
            reason = (resp.get("incomplete_details") or {}).get("reason")
            self.end = resp.get("status", kind.split(".")[-1]) + (f" ({reason})" if reason else "")
        elif kind in ("response.failed", "error"):
            err = (ev.get("response") or {}).get("error") or ev.get("error") or ev
            t.note("error", str(err.get("message", err)) if isinstance(err, dict) else str(err))
            self.end = "failed"

    def chat(self, ev: dict[str, Any]) -> None:
        t = self.t
        if "error" in ev:
            t.note("error", str((ev["error"] or {}).get("message", ev["error"])))
            self.end = "failed"
            return
        for choice in ev.get("choices") or []:
            delta = choice.get("delta") or {}
            t.add("reasoning", delta.get("reasoning_content") or "")
            t.add("assistant", delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                if fn.get("name"):
                    self.calls[call.get("index")] = f"tool call {fn['name']} ({call.get('id')})"
                t.add(self.calls.get(call.get("index"), "tool call"), fn.get("arguments") or "")
            if choice.get("finish_reason"):
                self.end = choice["finish_reason"]
        if ev.get("usage"):
            self.usage = ev["usage"]

    def anthropic(self, kind: str, ev: dict[str, Any]) -> None:
        t = self.t
        if kind == "message_start":
            self.anthropic_input = (ev.get("message") or {}).get("usage") or {}
        elif kind == "content_block_start":
            block = ev.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.blocks[ev.get("index")] = f"tool use {block.get('name')} ({block.get('id')})"
            elif block.get("type") == "image":
                t.note("image", _image_note((block.get("source") or {}).get("data")))
            else:
                self.blocks[ev.get("index")] = "thinking" if block.get("type") == "thinking" else "assistant"
        elif kind == "content_block_delta":
            delta = ev.get("delta") or {}
            label = self.blocks.get(ev.get("index"), "assistant")
            t.add(label, delta.get("text") or delta.get("thinking") or delta.get("partial_json") or "")
        elif kind == "message_delta":
            if ev.get("usage"):
                self.usage = {**self.anthropic_input, **{k: v for k, v in ev["usage"].items() if v is not None}}
            if (ev.get("delta") or {}).get("stop_reason"):
                self.end = ev["delta"]["stop_reason"]
        elif kind == "error":
            t.note("error", str((ev.get("error") or {}).get("message", ev)))
            self.end = "failed"

    def finish(self, done: bool, keepalives: int) -> str:
        tail = [self.end or ("[DONE]" if done else "no end event: the stream was cut")]
        if self.usage:
            tail.append(usage_line(self.usage))
        if keepalives:
            tail.append(f"{keepalives} keep-alive comment(s)")
        self.t.note("end", " · ".join(tail))
        return self.t.render()


def render(data: bytes) -> str:
    """The conversation in an SSE answer: one `[kind] text` line per run of the same kind, and one `[end]`
    line with how it ended and its token counts."""
    a = _Answer()
    parser = SSEParser()
    keepalives = 0
    done = False
    for ev in [*parser.feed(data), *parser.close()]:
        if ev is COMMENT:
            keepalives += 1
            continue
        if ev.data.strip() == b"[DONE]":
            done = True
            continue
        try:
            payload = json.loads(ev.data)
        except ValueError:
            a.t.note("data", ev.data.decode("utf-8", "replace")[:200])
            continue
        if not isinstance(payload, dict):
            continue
        kind = ev.event or payload.get("type") or ""
        if kind.startswith("response.") or (kind == "error" and "sequence_number" in payload):
            a.codex(kind, payload)
        elif payload.get("object") == "chat.completion.chunk" or "choices" in payload or (not ev.event and "error" in payload):
            a.chat(payload)
        else:
            a.anthropic(kind, payload)
    return a.finish(done, keepalives)


def _content_text(content: Any) -> str:
    """The text of a message's content (a string, or parts of any of the three formats); images named."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else json.dumps(content, ensure_ascii=False)
    pieces = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type", "")
        if isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif "image" in kind:
            pieces.append("(image)")
        elif kind in ("input_file", "file", "document"):
            pieces.append("(file)")
    return " ".join(pieces)


def render_answer_json(body: Any) -> str:
    """A JSON answer (chat completion, Responses object, Anthropic message, Images answer) as a transcript."""
    t = _Transcript()
    if not isinstance(body, dict):
        return ""
    if "error" in body and body.get("object") != "response":
        err = body["error"]
        t.note("error", str(err.get("message", err)) if isinstance(err, dict) else str(err))
        return t.render()
    end = None
    for choice in body.get("choices") or []:  # chat completion
        msg = choice.get("message") or {}
        t.note("reasoning", msg["reasoning_content"]) if msg.get("reasoning_content") else None
        t.note("assistant", _content_text(msg.get("content"))) if msg.get("content") else None
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            t.note(f"tool call {fn.get('name')} ({call.get('id')})", str(fn.get("arguments", "")))
        end = choice.get("finish_reason")
    for item in body.get("output") or []:  # Responses
        kind = item.get("type")
        if kind == "message":
            t.note("assistant", _content_text(item.get("content")))
        elif kind == "reasoning":
            t.note("reasoning", " ".join(s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict)) or "(encrypted)")
        elif kind in ("function_call", "custom_tool_call"):
            t.note(f"tool call {item.get('name')} ({item.get('call_id')})", str(item.get("arguments", item.get("input", ""))))
        elif kind == "image_generation_call":
            t.note("image", _image_note(item.get("result")))
    if body.get("type") == "message":  # Anthropic
        for block in body.get("content") or []:
            kind = block.get("type")
            if kind == "tool_use":
                t.note(f"tool use {block.get('name')} ({block.get('id')})", json.dumps(block.get("input"), ensure_ascii=False))
            elif kind in ("text", "thinking"):
                t.note("assistant" if kind == "text" else "thinking", block.get(kind, ""))
        end = body.get("stop_reason")
    for n, image in enumerate(body.get("data") or [], 1):  # Images
        if isinstance(image, dict):
            t.note(f"image {n}", _image_note(image.get("b64_json")))
    if body.get("object") == "response":
        end = body.get("status")
    tail = [str(end)] if end else []
    if isinstance(body.get("usage"), dict):
        tail.append(usage_line(body["usage"]))
    if tail:
        t.note("end", " · ".join(tail))
    return t.render()


def _tool_result_text(content: Any) -> str:
    return _content_text(content) if not isinstance(content, str) else content


def render_request(body: Any) -> str:
    """The request side of a conversation: system prompt and instructions (folded), each message sent in,
    tool calls and tool results, and the tools offered (by name)."""
    t = _Transcript()
    if not isinstance(body, dict):
        return ""
    settings = [f"model {body['model']}"] if isinstance(body.get("model"), str) else []
    for key in (
        "reasoning_effort",
        "max_tokens",
        "max_output_tokens",
        "max_completion_tokens",
        "temperature",
        "service_tier",
        "size",
        "quality",
    ):
        if body.get(key) is not None:
            settings.append(f"{key} {body[key]}")
    if isinstance(body.get("reasoning"), dict) and body["reasoning"].get("effort"):
        settings.append(f"effort {body['reasoning']['effort']}")
    if isinstance(body.get("thinking"), dict) and body["thinking"].get("type"):
        budget = body["thinking"].get("budget_tokens")
        settings.append(f"thinking {body['thinking']['type']}" + (f" ({budget} tokens)" if budget else ""))
    if body.get("stream"):
        settings.append("stream")
    if body.get("previous_response_id"):
        settings.append(f"after {body['previous_response_id']}")
    if settings:
        t.note("asked", " · ".join(settings))
    system = body.get("system", body.get("instructions"))
    if system:
        t.note("system", fold(_content_text(system), FOLD_SYSTEM_AT))
    if isinstance(body.get("prompt"), str):  # Images
        t.note("prompt", fold(body["prompt"]))
    messages = body.get("messages")
    items = body.get("input")
    if isinstance(items, str):
        t.note("user", fold(items))
    for item in (messages if isinstance(messages, list) else []) + (items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        _request_item(t, item)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        names = [str(x.get("name") or (x.get("function") or {}).get("name") or x.get("type")) for x in tools if isinstance(x, dict)]
        t.note("tools", f"{len(names)}: " + fold(", ".join(names), 300))
    return t.render()


def _request_item(t: _Transcript, item: dict[str, Any]) -> None:
    kind, role = item.get("type"), item.get("role")
    if kind in ("function_call", "custom_tool_call"):
        t.note(f"tool call {item.get('name')} ({item.get('call_id')})", fold(str(item.get("arguments", item.get("input", "")))))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        t.note(f"tool result ({item.get('call_id')})", fold(_tool_result_text(item.get("output"))))
    elif kind == "reasoning":
        t.note("reasoning", "(carried over)")
    elif kind == "item_reference":
        t.note("item", f"reference {item.get('id')}")
    elif role == "tool":  # chat
        t.note(f"tool result ({item.get('tool_call_id')})", fold(_tool_result_text(item.get("content"))))
    elif role:
        content = item.get("content")
        if isinstance(content, list):  # Anthropic blocks: text, tool_use, tool_result
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_use":
                    t.note(f"tool use {block.get('name')} ({block.get('id')})", fold(json.dumps(block.get("input"), ensure_ascii=False)))
                elif block.get("type") == "tool_result":
                    t.note(f"tool result ({block.get('tool_use_id')})", fold(_tool_result_text(block.get("content"))))
        text = (
            _content_text([b for b in content if not isinstance(b, dict) or b.get("type") not in ("tool_use", "tool_result")])
            if isinstance(content, list)
            else _content_text(content)
        )
        if text:
            t.note(
                "system" if role in ("system", "developer") else role,
                fold(text, FOLD_SYSTEM_AT if role in ("system", "developer") else FOLD_AT),
            )
        for call in item.get("tool_calls") or []:  # chat assistant turns
            fn = call.get("function") or {}
            t.note(f"tool call {fn.get('name')} ({call.get('id')})", fold(str(fn.get("arguments", ""))))


def render_body(data: bytes, content_type: str) -> str:
    """An answer body (SSE or JSON) as a transcript; '' when it is neither."""
    if "event-stream" in content_type or data.lstrip().startswith((b"event:", b"data:")):
        return render(data)
    try:
        return render_answer_json(json.loads(data))
    except ValueError:
        return ""


def images_in(data: bytes) -> list[bytes]:
    """The images an answer carries, decoded: Images answers (`data[].b64_json`), Responses answers and
    streams (`image_generation_call` results), Anthropic image blocks, and data URLs (Chat answers)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "image_generation_call" and isinstance(node.get("result"), str):
                found.append(node["result"])
                return
            if isinstance(node.get("b64_json"), str):
                found.append(node["b64_json"])
            if node.get("type") == "base64" and isinstance(node.get("data"), str) and "image" in str(node.get("media_type")):
                found.append(node["data"])  # an Anthropic image block's source
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    if data.lstrip().startswith((b"event:", b"data:")):
        parser = SSEParser()
        for ev in [*parser.feed(data), *parser.close()]:
            if ev is COMMENT or not ev.data.startswith(b"{"):
                continue
            try:
                payload = json.loads(ev.data)
            except ValueError:
                continue
            kind = ev.event or payload.get("type")
            if kind == "response.output_item.done":
                walk(payload.get("item"))
            elif kind == "content_block_start":
                walk(payload.get("content_block"))
    else:
        try:
            walk(json.loads(data))
        except ValueError:
            return []
    found += [m[2] for m in DATA_URL.finditer(data.decode("utf-8", "replace"))] if b"data:image/" in data else []
    out = []
    for text in dict.fromkeys(found):  # a result repeated in the final answer counts once
        try:
            out.append(base64.b64decode(text, validate=True))
        except ValueError:
            continue
    return out


def pretty_json(data: bytes, limit: int = 4000) -> str:
    """A JSON body indented, with strings longer than `limit` folded; other bodies as text."""

    def shorten(node: Any) -> Any:
        if isinstance(node, str) and len(node) > limit:
            return fold(node, limit)
        if isinstance(node, dict):
            return {k: shorten(v) for k, v in node.items()}
        if isinstance(node, list):
            return [shorten(v) for v in node]
        return node

    try:
        return json.dumps(shorten(json.loads(data)), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return data.decode("utf-8", "replace")
