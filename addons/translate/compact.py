"""Remote compaction: the legacy `POST /responses/compact` served through the backend's streamed `/responses`.

The backend's own `/codex/responses/compact` has been seen answering 404, while a streamed Responses
request whose input ends with `{"type": "compaction_trigger"}` answers with exactly one `compaction`
output item (the form the Codex CLI itself uses now, "remote compaction v2"). So a compact request is
sent upstream in that form and its stream is folded into the JSON answer the legacy endpoint gave.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from cliproxy.addons.translate import codex_body, errors, responses
from cliproxy.addons.translate.stream import Collector

TRIGGER_TYPE = "compaction_trigger"
ITEM_TYPE = "compaction"
#: OpenAI's SDK requires `usage` on a compaction answer; an upstream that sent none counted nothing.
NO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 0,
}


def _with_trigger(body: dict[str, Any]) -> dict[str, Any]:
    """The body with one trigger at the end of `input` (a client that sent one already keeps just that)."""
    items = [i for i in body["input"] if not (isinstance(i, dict) and i.get("type") == TRIGGER_TYPE)]
    return {**body, "input": [*items, {"type": TRIGGER_TYPE}]}


def request_to_codex(body: Any, settings: codex_body.Settings) -> codex_body.CodexCall:
    """A compact request from an OpenAI-format client: normalised like any Responses request, then the
    trigger appended. The client gets JSON whatever its `stream` said (the legacy endpoint never streamed)."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    call = responses.request_to_codex({**body, "stream": False}, settings)
    call.body = _with_trigger(call.body)
    return call


def codex_request_to_codex(body: Any, settings: codex_body.Settings) -> codex_body.CodexCall:
    """A compact request of the Codex CLI itself (pooled): its body is already in the backend's format and
    passes as it is, made a stored-nothing stream (what `/responses` requires) with the trigger appended."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise errors.bad_request("the compact request needs a JSON object with a `model`", "model")
    if not isinstance(body.get("input"), list):
        raise errors.bad_request("`input` must be an array of input items", "input")
    effort = body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    out = _with_trigger({**body, "store": False, "stream": True})
    return codex_body.CodexCall(out, False, body["model"], effort or "")


def answer(collector: Collector) -> dict[str, Any]:
    """The legacy compact answer from a finished stream: the one compaction item, the response id and usage.

    Anything but exactly one compaction item is the upstream's failure (502): handing the client an empty
    or doubled history would lose or corrupt its conversation."""
    final = collector.final_response()
    items = [i for i in final.get("output") or [] if isinstance(i, dict) and i.get("type") == ITEM_TYPE]
    if len(items) != 1:
        raise errors.ProxyError(
            502,
            f"the upstream answered the compaction request with {len(items)} compaction items instead of exactly one",
            "server_error",
            "compaction_failed",
        )
    created = final.get("created_at")
    out: dict[str, Any] = {
        "object": "response.compaction",
        "id": final.get("id") or f"resp_{uuid.uuid4().hex}",
        "created_at": created if isinstance(created, int) else int(time.time()),
        "output": items,
        "usage": final.get("usage") or dict(NO_USAGE),
    }
    for key in ("model", "status", "service_tier"):
        if final.get(key) is not None:
            out[key] = final[key]
    return out
