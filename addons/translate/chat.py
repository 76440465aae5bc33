"""OpenAI Chat Completions ⇄ Codex Responses: request translation, stream translation, aggregation."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from cliproxy.addons.translate import codex_body, errors, headers, images, limits
from cliproxy.addons.translate.sse import DONE, SSEEvent, dumps, encode, is_utf8, literal_text
from cliproxy.addons.translate.stream import TEXT_DELTA_FRAME, CodexStream, Collector

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


# ---------------------------------------------------------------------------------------------
# Request


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    raise errors.bad_request(f"{where}.content must be a string or an array of content parts", where)


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list):
        raise errors.bad_request(f"{where}.content must be a string or an array of content parts", where)
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            parts.append({"type": "input_text", "text": part})
            continue
        if not isinstance(part, dict):
            raise errors.bad_request(f"{where}.content[{i}] must be an object", where)
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if not isinstance(part.get("text"), str):
                raise errors.bad_request(f"{where}.content[{i}].text must be a string", where)
            parts.append({"type": "input_text", "text": part["text"]})
        elif kind in ("image_url", "input_image"):
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise errors.bad_request(f"{where}.content[{i}].image_url.url must be a URL or a data: URL", where)
            parts.append({"type": "input_image", "image_url": url})
        elif kind in ("file", "input_file"):
            file = f if isinstance(f := part.get("file"), dict) else part
            if isinstance(file.get("file_data"), str):
                entry = {"type": "input_file", "file_data": file["file_data"]}
                if isinstance(file.get("filename"), str):
                    entry["filename"] = file["filename"]
                parts.append(entry)
            elif isinstance(file.get("file_id"), str):
                parts.append({"type": "input_file", "file_id": file["file_id"]})
            else:
                raise errors.bad_request(f"{where}.content[{i}].file needs file_data or file_id", where)
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            parts.append({"type": "input_audio", **part["input_audio"]})
        else:
            raise errors.bad_request(f"{where}.content[{i}] has unsupported type {kind!r}", where)
    return parts


def _tool_output(content: Any, where: str) -> Any:
    if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") in ("image_url", "input_image") for p in content):
        return _user_parts(content, where)
    return _text_of(content, where)


def _messages_to_input(messages: Any, rename: dict[str, str]) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise errors.bad_request("`messages` must be a non-empty array", "messages")
    items: list[dict[str, Any]] = []
    pending_calls: set[str] = set()
    for n, msg in enumerate(messages):
        where = f"messages[{n}]"
        if not isinstance(msg, dict):
            raise errors.bad_request(f"{where} must be an object", "messages")
        role = msg.get("role")
        if role not in _ROLES:
            raise errors.bad_request(f"{where}.role must be one of {', '.join(_ROLES)}", "messages")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = _text_of(content, where)
            items.append({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]})
        elif role == "user":
            items.append({"type": "message", "role": "user", "content": _user_parts(content, where)})
        elif role == "assistant":
            text = _text_of(content, where)
            if text:
                items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
            calls = msg.get("tool_calls") or []
            if not isinstance(calls, list):
                raise errors.bad_request(f"{where}.tool_calls must be an array", "messages")
            for k, call in enumerate(calls):
                items.append(_history_call(call, f"{where}.tool_calls[{k}]", rename, n, k))
                pending_calls.add(items[-1]["call_id"])
        else:  # tool / legacy function result
            call_id = msg.get("tool_call_id") or msg.get("name")
            output = _tool_output(content, where)
            if isinstance(call_id, str) and call_id in pending_calls:
                items.append({"type": "function_call_output", "call_id": call_id, "output": output})
            else:  # a result for no known call would be rejected upstream; keep its text for the model
                text = output if isinstance(output, str) else _text_of(content, where)
                items.append(
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"Tool result ({call_id}):\n{text}"}]}
                )
    return items


def _history_call(call: Any, where: str, rename: dict[str, str], n: int, k: int) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise errors.bad_request(f"{where} must be an object", "messages")
    call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else f"call_missing_{n}_{k}"
    if call.get("type") == "custom" and isinstance(call.get("custom"), dict):
        custom = call["custom"]
        return {
            "type": "custom_tool_call",
            "call_id": call_id,
            "name": rename.get(custom.get("name"), custom.get("name")),
            "input": str(custom.get("input", "")),
        }
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise errors.bad_request(f"{where}.function.name is required", "messages")
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        args = dumps(args).decode()
    return {"type": "function_call", "call_id": call_id, "name": rename.get(fn["name"], fn["name"]), "arguments": args}


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    raw = body.get("tools")
    if raw is None and isinstance(body.get("functions"), list):  # legacy `functions`
        raw = [{"type": "function", "function": f} for f in body["functions"]]
    if raw is None:
        return [], {}
    if not isinstance(raw, list):
        raise errors.bad_request("`tools` must be an array", "tools")
    names = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise errors.bad_request(f"tools[{i}] must be an object with a `type`", "tools")
        if tool["type"] == "function":
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise errors.bad_request(f"tools[{i}].function.name is required", "tools")
            names.append(fn["name"])
        elif tool["type"] == "custom":
            spec = tool.get("custom", tool)
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
                raise errors.bad_request(f"tools[{i}].custom.name is required", "tools")
            names.append(spec["name"])
    short_of = {orig: short for short, orig in codex_body.shorten_tool_names(names).items()}
    out = []
    for tool in raw:
        if tool["type"] == "function":
            fn = tool["function"]
            params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {"type": "object", "properties": {}}
            entry = {"type": "function", "name": short_of.get(fn["name"], fn["name"]), "parameters": params}
            if isinstance(fn.get("description"), str):
                entry["description"] = fn["description"]
            entry["strict"] = bool(fn.get("strict", False))
            out.append(entry)
        elif tool["type"] == "custom":
            custom = {**tool.get("custom", {}), **{k: v for k, v in tool.items() if k != "custom"}}
            name = custom.get("name")  # a top-level `name` wins over `custom.name`, and may be anything
            custom["name"] = short_of.get(name, name) if isinstance(name, str) else name
            out.append(custom)
        else:
            out.append(tool)
    return codex_body.rename_builtin_tools(out), {v: k for k, v in short_of.items()}


def _tool_choice(choice: Any, rename: dict[str, str]) -> Any:
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "none", "required"):
            raise errors.bad_request("`tool_choice` must be auto, none, required or a named tool", "tool_choice")
        return choice
    if isinstance(choice, dict):
        fn = choice.get("function") if isinstance(choice.get("function"), dict) else None
        if choice.get("type") == "function" and fn and isinstance(fn.get("name"), str):
            return {"type": "function", "name": rename.get(fn["name"], fn["name"])}
        if choice.get("type") == "custom" and isinstance(choice.get("custom"), dict):
            return {"type": "custom", "name": rename.get(choice["custom"].get("name"), choice["custom"].get("name"))}
        return codex_body.rename_builtin_tools([choice])[0]
    raise errors.bad_request("`tool_choice` must be a string or an object", "tool_choice")


def _text_format(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise errors.bad_request("`response_format` must be an object", "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return {"type": "text"}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise errors.bad_request("`response_format.json_schema.schema` must be an object", "response_format")
        fmt = {"type": "json_schema", "name": spec.get("name") or "response", "schema": spec["schema"]}
        if "strict" in spec:
            fmt["strict"] = bool(spec["strict"])
        if isinstance(spec.get("description"), str):
            fmt["description"] = spec["description"]
        return fmt
    raise errors.bad_request("`response_format.type` must be text, json_object or json_schema", "response_format")


def request_to_codex(body: Any, settings: codex_body.Settings) -> codex_body.CodexCall:
    """Translate a Chat Completions request body into a Codex Responses body."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise errors.bad_request("`stream` must be a boolean", "stream")
    if body.get("n") not in (None, 1):
        raise errors.bad_request("only n=1 is supported by the ChatGPT backend", "n")
    for name in ("logprobs", "top_logprobs"):
        if body.get(name):
            raise errors.bad_request(f"logprobs are not available from the ChatGPT backend; remove `{name}`", name)
    stop = limits.stop_list(body.get("stop"), "stop")
    max_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = limits.positive_int(body.get(max_name), max_name)
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities) or body.get("audio"):
        raise errors.bad_request("only text output is available from the ChatGPT backend; remove `audio`/`modalities`", "modalities")
    reasoning = r if isinstance(r := body.get("reasoning"), dict) else {}
    resolved = codex_body.resolve_model(settings, body.get("model"), reasoning.get("effort", body.get("reasoning_effort")))
    tools, names = _tools(body)
    rename = {v: k for k, v in names.items()}
    display = settings.chat_reasoning
    summary = (
        reasoning.get("summary")
        if isinstance(reasoning.get("summary"), str)
        else (None if display == "hidden" else settings.reasoning_summary)
    )

    messages = body.get("messages")
    out: dict[str, Any] = {
        "model": resolved.model,
        "instructions": "",
        "input": _messages_to_input(messages, rename),
        "reasoning": codex_body.reasoning_block(resolved.effort, summary),
    }
    if tools:
        out["tools"] = tools
        out["tool_choice"] = _tool_choice(body.get("tool_choice"), rename) or "auto"
        parallel = body.get("parallel_tool_calls", True)
        out["parallel_tool_calls"] = parallel if isinstance(parallel, bool) else True
    text: dict[str, Any] = {}
    if fmt := _text_format(body.get("response_format")):
        text["format"] = fmt
    verbosity = body.get("verbosity")
    if verbosity is None and isinstance(body.get("text"), dict):
        verbosity = body["text"].get("verbosity")
    if verbosity in ("low", "medium", "high"):
        text["verbosity"] = verbosity
    if text:
        out["text"] = text
    if tier := codex_body.service_tier(body.get("service_tier")):
        out["service_tier"] = tier
    key = body.get("prompt_cache_key")
    out["prompt_cache_key"] = (
        headers.check_text(key, "prompt_cache_key")
        if isinstance(key, str) and key
        else codex_body.derived_cache_key("chat", out["input"][:2])
    )
    stream_options = so if isinstance(so := body.get("stream_options"), dict) else {}
    options: dict[str, Any] = {"include_usage": bool(stream_options.get("include_usage")), "reasoning": display, "tool_names": names}
    lite = settings.catalog.lite(resolved.model)
    codex = codex_body.finalize(out, lite)
    if bounds := limits.options(codex, stop, max_tokens):
        options["limits"] = bounds
    return codex_body.CodexCall(
        codex, stream, resolved.model, resolved.effort, options, clamped_from=resolved.clamped_from, headers=codex_body.lite_headers(lite)
    )


# ---------------------------------------------------------------------------------------------
# Response


def usage_to_chat(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    out = {
        "prompt_tokens": usage.get("input_tokens", 0),
        "completion_tokens": usage.get("output_tokens", 0),
        "total_tokens": usage.get("total_tokens", usage.get("input_tokens", 0) + usage.get("output_tokens", 0)),
    }
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def finish_reason(status: str | None, reason: str | None, tool_calls: bool) -> str:
    if status == "incomplete":
        if reason in ("max_output_tokens", "max_tokens"):
            return "length"
        if reason == "content_filter":
            return "content_filter"
    return "tool_calls" if tool_calls else "stop"


def completion_id(response_id: Any) -> str:
    """A `chatcmpl-…` id (the shape clients expect), made from the upstream response id so that the
    same answer keeps one id in the stream, the aggregate and the proxy's log."""
    if isinstance(response_id, str) and response_id:
        return "chatcmpl-" + response_id.removeprefix("resp_").removeprefix("chatcmpl-")
    return f"chatcmpl-{uuid.uuid4().hex}"


def error_frame(err: errors.ProxyError) -> bytes:
    return encode(errors.openai_body(err))


class ChatStream(CodexStream):
    """Codex events → `chat.completion.chunk` frames, one delta per upstream delta."""

    WANTS = frozenset(
        (
            "response.output_text.delta",
            "response.refusal.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_part.added",
            "response.reasoning_text.delta",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
        )
    )
    RAW_DELTAS = frozenset(("response.output_text.delta", "response.reasoning_summary_text.delta", "response.reasoning_text.delta"))
    TEXT_RUNS = True

    def __init__(
        self,
        model: str,
        include_usage: bool = False,
        reasoning: str = "reasoning_content",
        tool_names: dict[str, str] | None = None,
        limits: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(limits)
        self.model = model
        self.include_usage = include_usage
        self.reasoning = reasoning
        self.tool_names = tool_names or {}
        self._prefix = b""
        self._calls: dict[str, int] = {}  # item id (or "#output_index") -> tool_calls index
        self._streamed_args: set[int] = set()
        self._summary_parts = 0
        self._in_think = False
        self._started = False

    def _header(self, ev: dict[str, Any] | None) -> None:
        resp = (ev or {}).get("response") or {}
        rid = completion_id(resp.get("id"))
        created = resp.get("created_at") or int(time.time())
        model = resp.get("model") or self.model
        self._prefix = (
            b'{"id":'
            + dumps(rid)
            + b',"object":"chat.completion.chunk","created":'
            + dumps(created)
            + b',"model":'
            + dumps(model)
            + b',"choices":[{"index":0,"delta":'
        )

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._prefix:
            self._header(None)
        tail = b',"finish_reason":' + (dumps(finish) if finish else b"null") + b"}]}"
        return b"data: " + self._prefix + dumps(delta) + tail + b"\n\n"

    def _start(self, ev: dict[str, Any] | None) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        if ev is not None:
            self._header(ev)
        return [self._chunk({"role": "assistant", "content": ""})]

    def _close_think(self) -> list[bytes]:
        if not self._in_think:
            return []
        self._in_think = False
        return [self._chunk({"content": "</think>"})]

    def _call_index(self, ev: dict[str, Any]) -> int | None:
        key = ev.get("item_id")
        if isinstance(key, str) and key in self._calls:
            return self._calls[key]
        return self._calls.get(f"#{ev.get('output_index')}")

    def _announce(self, item: dict[str, Any], output_index: Any, arguments: str = "") -> tuple[int, bytes]:
        index = len({*self._calls.values()})
        for key in (item.get("id"), f"#{output_index}"):
            if isinstance(key, str):
                self._calls[key] = index
        name = item.get("name", "")
        call = {
            "index": index,
            "id": item.get("call_id") or item.get("id") or f"call_{index}",
            "type": "function",
            "function": {"name": self.tool_names.get(name, name), "arguments": arguments},
        }
        return index, self._chunk({"tool_calls": [call]})

    def on_text_run(self, data: bytes, pos: int, out: list[bytes]) -> int:
        if not self._started or self._in_think or self.finished or (m := TEXT_DELTA_FRAME.match(data, pos)) is None:
            return pos
        head, tail, match, n = b"data: " + self._prefix + b'{"content":', b'},"finish_reason":null}]}\n\n', TEXT_DELTA_FRAME.match, 0
        limiter = self.limiter
        while m is not None:
            literal = m["delta"]
            if not literal.isascii() and not is_utf8(literal):
                break  # parsed as usual: an event that is not UTF-8 is dropped
            if limiter is not None and not limiter.take(literal_text(literal)):
                break  # the limiter cuts or holds it: parsed as usual
            out.append(head + literal + tail)
            n += 1
            pos = m.end()
            m = match(data, pos)
        self.events += n
        return pos

    def on_raw_delta(self, kind: str, data: bytes, delta: re.Match[bytes]) -> bytes | None:
        # What `on_event` sends for a text (or, in the default mode, reasoning) delta once the answer has
        # started and no <think> is open: one chunk, the delta's literal as it came.
        if not self._started or self._in_think:
            return None
        if kind == "response.output_text.delta":
            key = b'{"content":'
        elif self.reasoning == "reasoning_content":
            key = b'{"reasoning_content":'
        else:
            return None
        return b"data: " + self._prefix + key + delta[1] + b'},"finish_reason":null}]}\n\n'

    def on_event(self, kind: str, ev: dict[str, Any] | None, raw: SSEEvent) -> list[bytes]:
        if kind in ("response.created", "response.in_progress"):
            return self._start(ev)
        if ev is None:
            return []
        out = self._start(None)
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            out += self._close_think()
            key = "content" if kind == "response.output_text.delta" else "refusal"
            out.append(self._chunk({key: ev.get("delta", "")}))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if self.reasoning == "hidden":
                return out
            delta = ev.get("delta", "")
            if self.reasoning == "think-tags":
                if not self._in_think:
                    self._in_think = True
                    delta = "<think>" + delta
                out.append(self._chunk({"content": delta}))
            else:
                out.append(self._chunk({"reasoning_content": delta}))
        elif kind == "response.reasoning_summary_part.added":
            self._summary_parts += 1
            if self._summary_parts > 1 and self.reasoning != "hidden":
                sep = {"content": "\n\n"} if self.reasoning == "think-tags" else {"reasoning_content": "\n\n"}
                out.append(self._chunk(sep))
        elif kind == "response.output_item.added":
            item = ev.get("item") or {}
            if item.get("type") in ("function_call", "custom_tool_call"):
                out += self._close_think()
                out.append(self._announce(item, ev.get("output_index"))[1])
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            index = self._call_index(ev)
            if index is not None and ev.get("delta"):
                self._streamed_args.add(index)
                out.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": ev["delta"]}}]}))
        elif kind in ("response.function_call_arguments.done", "response.custom_tool_call_input.done"):
            index = self._call_index(ev)
            full = ev.get("arguments", ev.get("input"))
            if index is not None and index not in self._streamed_args and isinstance(full, str):
                self._streamed_args.add(index)
                out.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": full}}]}))
        elif kind == "response.output_item.done":
            item = ev.get("item") or {}
            if item.get("type") == "image_generation_call":
                out += self._close_think()
                out.append(self._chunk({"content": images.markdown_image(item)}))
            elif item.get("type") in ("function_call", "custom_tool_call"):
                full = item.get("arguments", item.get("input", "")) or ""
                index = self._call_index({"item_id": item.get("id"), "output_index": ev.get("output_index")})
                if index is None:
                    out += self._close_think()
                    index, chunk = self._announce(item, ev.get("output_index"), full)
                    self._streamed_args.add(index)
                    out.append(chunk)
                elif index not in self._streamed_args:
                    self._streamed_args.add(index)
                    out.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": full}}]}))
        return out

    def on_end(self, error: errors.ProxyError | None) -> list[bytes]:
        out = self._close_think() if self._started else []
        if error is not None:
            out.append(error_frame(error))
            return out
        out = self._start(None) + out
        c = self.collector
        reason = (c.response.get("incomplete_details") or {}).get("reason")
        out.append(self._chunk({}, finish_reason(c.status, reason, bool(self._calls))))
        if self.include_usage and (usage := usage_to_chat(c.usage)) is not None:
            # OpenAI's usage chunk: the same envelope with `choices: []`
            head = self._prefix.split(b',"choices":', 1)[0]
            out.append(b"data: " + head + b',"choices":[],"usage":' + dumps(usage) + b"}\n\n")
        out.append(DONE)
        return out


def completion_from(
    collector: Collector, model: str, reasoning: str = "reasoning_content", tool_names: dict[str, str] | None = None
) -> dict[str, Any]:
    """Build a `chat.completion` object from a finished Codex stream."""
    names = tool_names or {}
    resp = collector.final_response()
    texts, refusals, calls = [], [], []
    thoughts: list[str] = []
    for item in resp["output"]:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal", ""))
        elif kind == "image_generation_call":
            texts.append(images.markdown_image(item))
        elif kind == "reasoning":
            thoughts.extend(s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict))
        elif kind in ("function_call", "custom_tool_call"):
            name = item.get("name", "")
            calls.append(
                {
                    "id": item.get("call_id") or item.get("id"),
                    "type": "function",
                    "function": {"name": names.get(name, name), "arguments": item.get("arguments", item.get("input", "")) or ""},
                }
            )
    content = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    thinking = "\n\n".join(t for t in thoughts if t)
    if thinking and reasoning == "think-tags":
        message["content"] = f"<think>{thinking}</think>{content}"
    elif thinking and reasoning != "hidden":
        message["reasoning_content"] = thinking
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = calls
    reason = (resp.get("incomplete_details") or {}).get("reason")
    out: dict[str, Any] = {
        "id": completion_id(resp.get("id")),
        "object": "chat.completion",
        "created": resp.get("created_at") or int(time.time()),
        "model": resp.get("model") or model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason(collector.status, reason, bool(calls)), "logprobs": None}
        ],
    }
    if usage := usage_to_chat(collector.usage):
        out["usage"] = usage
    return out
