"""OpenAI Responses API ⇄ Codex backend: the same format, with the backend's rules applied."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cliproxy.addons.translate import codex_body, errors, headers, limits
from cliproxy.addons.translate.sse import SSEEvent, encode, is_utf8, literal_text
from cliproxy.addons.translate.stream import TERMINAL_OK, TEXT_DELTA_FRAME, CodexStream

logger = logging.getLogger(__name__)


def _input_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise errors.bad_request("`input` must be a string or an array of input items", "input")
    items = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise errors.bad_request(f"input[{i}] must be an object", "input")
        if item.get("role") == "system":
            item = {**item, "role": "developer"}
        if item.get("type") == "reasoning" and not item.get("encrypted_content"):
            continue  # with store=false the backend cannot resolve a reasoning item by id alone
        items.append(item)
    return items


def request_to_codex(
    body: Any, settings: codex_body.Settings, client_headers: Mapping[str, str] | None = None, *, stream_default: bool = False
) -> codex_body.CodexCall:
    """A Responses body (an SDK's, or the Codex CLI's own) made fit for the Codex backend, faithfully.

    Only what the user asked for or the backend forces changes: the model (alias, effort suffix →
    slug), the effort merged into the client's own `reasoning` object, `store`, `stream`, `include`
    (merged), the fields the backend rejects, `system` roles and id-only reasoning items the backend
    cannot take, `web_search_preview` spelled `web_search`. Nothing the client sent is dropped beyond
    that (`tool_choice`, `parallel_tool_calls`, `text`, `client_metadata`, item ids, `additional_tools`),
    and nothing is added but a derived `prompt_cache_key` when the client sent none. A classic-form
    body for a Responses Lite model is converted to the lite form, since the backend refuses it; a
    lite-form body passes as it is. Lite requests carry the lite header.
    """
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    for name in ("top_logprobs", "logprobs"):
        if body.get(name):
            raise errors.bad_request(f"logprobs are not available from the ChatGPT backend; remove `{name}`", name)
    if isinstance(body.get("include"), list) and "message.output_text.logprobs" in body["include"]:
        raise errors.bad_request(
            "logprobs are not available from the ChatGPT backend; remove `message.output_text.logprobs` from `include`", "include"
        )
    max_output = limits.positive_int(body.get("max_output_tokens"), "max_output_tokens")
    stream = body.get("stream", stream_default)
    if not isinstance(stream, bool):
        raise errors.bad_request("`stream` must be a boolean", "stream")
    if "input" not in body:
        raise errors.bad_request("`input` is required", "input")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise errors.bad_request("`reasoning` must be an object", "reasoning")
    resolved = codex_body.resolve_model(settings, body.get("model"), (reasoning or {}).get("effort", body.get("reasoning_effort")))
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise errors.bad_request("`instructions` must be a string", "instructions")
    if body.get("include") is not None and not isinstance(body["include"], list):
        raise errors.bad_request("`include` must be an array of strings", "include")

    out = {k: v for k, v in body.items() if k != "reasoning_effort"}
    out["model"] = resolved.model
    out["input"] = _input_items(body["input"])
    out["reasoning"] = {**(reasoning or {}), "effort": resolved.effort}
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise errors.bad_request("`tools` must be an array", "tools")
    if tools:
        out["tools"] = codex_body.rename_builtin_tools(tools)
    if isinstance(body.get("tool_choice"), dict):
        out["tool_choice"] = codex_body.rename_builtin_tools([body["tool_choice"]])[0]
    if out.get("instructions") is None:
        out.pop("instructions", None)
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        headers.check_text(key, "prompt_cache_key")
    else:
        out["prompt_cache_key"] = codex_body.derived_cache_key("responses", out.get("instructions") or "", out["input"][:2])
    codex_body.backend_rules(out)
    said_lite = str((client_headers or {}).get(codex_body.LITE_HEADER, "")).strip().lower() == "true"
    lite = said_lite or settings.catalog.lite(resolved.model)
    if lite and not codex_body.is_lite_form(out):
        codex_body.to_lite(out)
    bounds = limits.options(out, [], max_output)
    return codex_body.CodexCall(
        out,
        stream,
        resolved.model,
        resolved.effort,
        {"limits": bounds} if bounds else {},
        clamped_from=resolved.clamped_from,
        headers=codex_body.lite_headers(lite),
    )


def error_event(err: errors.ProxyError, sequence_number: int) -> bytes:
    body = {
        "type": "error",
        "code": err.code or errors.openai_body(err)["error"]["code"],
        "message": err.message,
        "param": err.param,
        "sequence_number": sequence_number,
    }
    return encode(body, "error")


class ResponsesStream(CodexStream):
    """Passes events through byte for byte; the terminal event gets the full `output` back.

    With a client-set `max_output_tokens` the text is cut at the limit and the stream ends as the
    Responses API ends it: the message's `done` events with the text sent, then `response.incomplete`.

    `on_final`, when set, receives the finished response object just before its terminal event is
    handed on to the client (the store books it there, so a follow-up can never overtake it)."""

    TEXT_RUNS = True

    def __init__(self, limits: dict[str, Any] | None = None) -> None:
        super().__init__(limits)
        self._sequence = 0
        self.on_final: Callable[[dict[str, Any]], None] | None = None

    def on_text_run(self, data: bytes, pos: int, out: list[bytes]) -> int:
        # Text deltas pass through as they came (`on_event` re-frames them byte for byte): a run of them is
        # one slice of the upstream bytes.
        if self.finished:
            return pos
        start, match, n, limiter = pos, TEXT_DELTA_FRAME.match, 0, self.limiter
        while (m := match(data, pos)) is not None:
            if limiter is not None:  # a limited answer parses its deltas: their text is booked, their number kept
                if not is_utf8(m["delta"]) or not limiter.take(literal_text(m["delta"])):
                    break  # not UTF-8 (dropped), or cut or held by the limiter: parsed as usual
                if m["seq"] is not None:
                    self._sequence = int(m["seq"])
            pos = m.end()
            n += 1
        if n:
            out.append(data[start:pos])
            self.events += n
        return pos

    def on_event(self, kind: str, ev: dict[str, Any] | None, raw: SSEEvent) -> list[bytes]:
        if ev is not None and isinstance(ev.get("sequence_number"), int):
            self._sequence = ev["sequence_number"]
        if kind in TERMINAL_OK and ev is not None:
            ev = {**ev, "response": {**ev.get("response", {}), **self._final()}}
            if self.on_final is not None:
                try:
                    self.on_final(ev["response"])
                except Exception:  # keeping the answer must never break it
                    logger.exception("cliproxy: booking a finished response failed")
            return [encode(ev, kind)]
        return [b"event: " + kind.encode() + b"\ndata: " + raw.data + b"\n\n"]

    def _final(self) -> dict[str, Any]:
        final = self.collector.final_response()
        return {"output": final["output"], **({"usage": final["usage"]} if "usage" in final else {})}

    def _next(self, kind: str, **fields: Any) -> bytes:
        self._sequence += 1
        return encode({"type": kind, **fields, "sequence_number": self._sequence}, kind)

    def _ended_locally(self) -> list[bytes]:
        final = self.collector.final_response()
        out = []
        for index, item in sorted(self.collector.items.items()):
            if item.get("type") == "message" and item.get("status") == "incomplete":
                part = item["content"][0]
                where = {"item_id": item["id"], "output_index": index}
                out += [
                    self._next("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]),
                    self._next("response.content_part.done", **where, content_index=0, part=part),
                    self._next("response.output_item.done", output_index=index, item=item),
                ]
        kind = "response.incomplete" if final.get("status") == "incomplete" else "response.completed"
        return out + [self._next(kind, response=final)]

    def on_end(self, error: errors.ProxyError | None) -> list[bytes]:
        if error is None and self.collector.ended_locally:
            return self._ended_locally()
        if error is None or (self.collector.terminal and self.collector.error is error):
            return []  # success, or the upstream's own failure event was already passed through
        self._sequence += 1
        return [error_event(error, self._sequence)]
