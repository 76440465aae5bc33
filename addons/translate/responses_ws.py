"""Responses over WebSocket: client `response.create` frames → Codex frames, local warm-ups, error
frames, and what the backend's frames mean for the pool (pure; no mitmproxy import).

Frames are the HTTP body's JSON with a `type`; the backend answers each turn with one text frame per
stream event (the SSE `data:` JSON) and keeps the socket's own history, so later turns carry
`previous_response_id` plus only the new items (that field is therefore kept here, unlike over HTTP).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cliproxy.addons.translate import client_json, codex_body, errors, responses

OPENAI_BETA = "responses_websockets=2026-02-06"
#: The close that makes the Codex CLI replay the whole conversation on a fresh socket.
REPLAY_CODE, REPLAY_REASON = 1012, "upstream requires HTTP replay"
TERMINAL = ("response.completed", "response.failed", "response.incomplete")
#: Client frame types that are only bookkeeping for the backend's socket state: dropped quietly.
IGNORED_TYPES = frozenset({"response.processed"})
MAX_WARMUPS = 8


@dataclass(slots=True)
class Turn:
    """A translated client turn: the frame to send upstream, or a warm-up to answer locally."""

    frame: dict[str, Any]
    model: str
    effort: str
    client_model: str | None
    cache_key: str | None
    warmup: bool = False


def error_frame(err: errors.ProxyError) -> bytes:
    """The error frame the Codex CLI reads like an HTTP error: `status` plus an OpenAI error object."""
    body = errors.openai_body(err)["error"]
    if err.retry_after is not None:
        body["resets_in_seconds"] = err.retry_after
    return json.dumps({"type": "error", "status": err.status, "error": body}, ensure_ascii=False).encode()


def parse_frame(content: bytes) -> dict[str, Any]:
    """A client text frame as a JSON object with a string `type`, or a 400 that says what is wrong."""
    frame = client_json.parse(content, "the WebSocket frame")
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise errors.bad_request('a WebSocket frame must be a JSON object with a string `type` ("response.create")', "type")
    return frame


class Conversation:
    """Per-socket memory the translation needs: the warm-ups answered locally, whose ids a later turn
    may name as `previous_response_id` (the backend never saw them, so their input is sent in full)."""

    def __init__(self) -> None:
        self.warmups: OrderedDict[str, list[Any]] = OrderedDict()

    def translate(self, frame: dict[str, Any], settings: codex_body.Settings) -> Turn:
        """A `response.create` frame with the HTTP body's treatment (model, effort, backend rules)."""
        body = {k: v for k, v in frame.items() if k != "type"}
        previous = body.get("previous_response_id")
        if previous is not None and (not isinstance(previous, str) or not previous):
            raise errors.bad_request("`previous_response_id` must be a non-empty string", "previous_response_id")
        generate = body.get("generate", True)
        if not isinstance(generate, bool):
            raise errors.bad_request("`generate` must be a boolean", "generate")
        call = responses.request_to_codex(body, settings)
        out: dict[str, Any] = {"type": "response.create", **call.body}
        if previous is not None and previous in self.warmups:
            out["input"] = self.warmups[previous] + out["input"]
        elif previous is not None:
            out["previous_response_id"] = previous
        client_model = body.get("model") if isinstance(body.get("model"), str) else None
        return Turn(out, call.model, call.effort, client_model, call.body.get("prompt_cache_key"), warmup=not generate)

    def warmup_events(self, turn: Turn) -> list[bytes]:
        """`response.created` + `response.completed` for a `generate: false` warm-up; remembers its input."""
        response_id = f"resp_warmup_{uuid.uuid4().hex}"
        self.warmups[response_id] = list(turn.frame.get("input", []))
        while len(self.warmups) > MAX_WARMUPS:
            self.warmups.popitem(last=False)
        base = {"id": response_id, "object": "response", "created_at": 0, "model": turn.model, "status": "in_progress", "output": []}
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        events = [
            {"type": "response.created", "sequence_number": 0, "response": base},
            {"type": "response.completed", "sequence_number": 1, "response": {**base, "status": "completed", "usage": usage}},
        ]
        return [json.dumps(e).encode() for e in events]


def server_event(content: bytes) -> dict[str, Any] | None:
    """A backend frame as a JSON object, or None when it is not one (passed through untouched)."""
    try:
        event = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def error_of(event: dict[str, Any]) -> errors.ProxyError | None:
    """A backend `error` frame (or `response.failed`) as the error it carries."""
    kind = event.get("type")
    if kind == "error":
        inner = event.get("error")
        inner = inner if isinstance(inner, dict) else event
        status = event.get("status", event.get("status_code"))
        status = status if isinstance(status, int) and not isinstance(status, bool) else 400
        resets = inner.get("resets_in_seconds")
        return errors.ProxyError(
            status,
            str(inner.get("message") or "upstream error"),
            inner.get("type"),
            inner.get("code") or inner.get("type"),
            retry_after=int(resets) if isinstance(resets, int | float) and not isinstance(resets, bool) else None,
        )
    if kind == "response.failed":
        response = event.get("response")
        response = response if isinstance(response, dict) else {}
        err = response.get("error")
        err = err if isinstance(err, dict) else {}
        return errors.ProxyError(500, str(err.get("message") or "the response failed"), "server_error", err.get("code"))
    return None


def is_usage_limit(err: errors.ProxyError) -> bool:
    return err.status == 429 and "usage_limit_reached" in (err.type, err.code)


def headers_of(event: dict[str, Any]) -> dict[str, str]:
    """The `headers` an error frame carries (`x-codex-*` quota), lower-case names."""
    headers = event.get("headers")
    return {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
