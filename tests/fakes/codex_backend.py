"""A fake ChatGPT Codex backend on 127.0.0.1 that streams real-shaped SSE and records what it got.

It speaks HTTP/1.1 by hand (asyncio streams in a background thread) so tests control the bytes on
the wire: frames split at awkward places (inside `\\r\\n`, inside UTF-8 sequences, several frames in
one chunk), keep-alive comments, streams cut mid-way, JSON errors with real shapes.

    with CodexBackend() as backend:
        backend.base_url          # use as codex-base-url
        backend.replies.append(sse(turn().text("Hi").events()))
        ...
        backend.received[-1].json

It also speaks the Responses WebSocket protocol on the same path (a GET upgrade): one text frame per
event for each `response.create`, per-socket history for `previous_response_id`, and the real
backend's refusals (unknown id on a fresh socket, full history plus `previous_response_id`).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import images as fake_images

PATH = "/backend-api/codex/responses"
MODELS_PATH = "/backend-api/codex/models"


# ---------------------------------------------------------------------------------------------
# What a test can ask the backend to answer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SSEReply:
    events: list[tuple[str, dict[str, Any]]]
    chunking: str = "awkward"  # awkward | frames | whole | burst (one HTTP chunk per frame, all in one write)
    crlf: bool = False
    keepalive_every: int = 0  # a `: keep-alive` comment after every N frames
    cut_after: int | None = None  # close the connection after N frames, mid-stream
    delay: float = 0.0  # seconds between frames
    stall: float = 0.0  # seconds of silence before the status line (a hung upstream)
    pause_after: tuple[int, float] | None = None  # (N, seconds): silence after N frames, mid-stream
    gzip: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    seed: int = 0


@dataclass
class JSONReply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawReply:
    """Bytes exactly as given (a broken answer), then the connection is reset."""

    data: bytes = b""


Reply = SSEReply | JSONReply | RawReply


def sse_head(extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n" + extra.encode() + b"\r\n"


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(events: list[tuple[str, dict[str, Any]]], **kw: Any) -> SSEReply:
    return SSEReply(events, **kw)


WHAM_USAGE_PATH = "/backend-api/wham/usage"


def wham_usage(used_percent: float, plan: str = "plus") -> dict[str, Any]:
    """`GET /backend-api/wham/usage` as the backend answers it (both windows at `used_percent`)."""
    now = int(time.time())
    return {
        "plan_type": plan,
        "rate_limit": {
            "primary_window": {
                "used_percent": used_percent,
                "reset_at": now + 9000,
                "limit_window_seconds": 18000,
                "reset_after_seconds": 9000,
            },
            "secondary_window": {
                "used_percent": used_percent,
                "reset_at": now + 300000,
                "limit_window_seconds": 604800,
                "reset_after_seconds": 300000,
            },
        },
        "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
        "rate_limit_reset_credits": {"available_count": 1},
        "additional_rate_limits": [],
    }


def usage_limit(resets_in: int = 3600, plan: str = "plus") -> JSONReply:
    """The backend's quota answer (HTTP 429, `usage_limit_reached` with `resets_in_seconds`)."""
    return JSONReply(
        429,
        {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": plan,
                "resets_at": int(time.time()) + resets_in,
                "resets_in_seconds": resets_in,
            }
        },
    )


def unauthorized() -> JSONReply:
    return JSONReply(
        401,
        {
            "error": {
                "message": "Your authentication token has been invalidated. Please try signing in again.",
                "type": "invalid_request_error",
                "code": "token_invalidated",
                "param": None,
            },
            "status": 401,
        },
    )


def workspace_discovery(account_id: str) -> JSONReply:
    """`GET /backend-api/wham/accounts/check` as the Codex CLI needs it before a turn in ChatGPT mode."""
    return JSONReply(
        200,
        {
            "accounts": [
                {
                    "id": account_id,
                    "structure": "personal",
                    "workspace_backend_origin": "NO_CONSTRAINT",
                    "account_routing_override": "NO_CONSTRAINT",
                }
            ],
            "account_ordering": [account_id],
            "default_account_id": account_id,
        },
    )


def detail(status: int, message: str) -> JSONReply:
    return JSONReply(status, {"detail": message})


#: Service tiers the backend takes; `fast` is the UI's name for `priority`, which the backend refuses as such.
SERVICE_TIERS = ("auto", "default", "flex", "priority", "ultrafast")

QUOTA_HEADERS = {
    "x-codex-primary-used-percent": "12.5",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-after-seconds": "9000",
    "x-codex-secondary-used-percent": "40",
    "x-codex-secondary-window-minutes": "10080",
    "x-codex-secondary-reset-after-seconds": "300000",
}


# ---------------------------------------------------------------------------------------------
# The model catalog (`GET /models?client_version=`), per account and plan

_LEVEL_TEXT = {
    "low": "Fast responses with lighter reasoning",
    "medium": "Balances speed and reasoning depth for everyday tasks",
    "high": "Greater reasoning depth for complex problems",
    "xhigh": "Extra high reasoning depth for complex problems",
    "max": "Maximum reasoning depth for the hardest problems",
    "ultra": "Maximum reasoning with automatic task delegation",
}
_SIX = ("low", "medium", "high", "xhigh", "max", "ultra")

#: (slug, display name, levels, context window, lite, visibility, minimal client version, default tier), as the CLI 0.169.0 knows them
CLI_MODELS = (
    ("gpt-6.1-sol", "GPT-6.1-Sol", _SIX, 272_000, True, "list", "0.153.0", None),
    ("gpt-6-astra", "GPT-6-Astra", _SIX, 272_000, True, "list", "0.153.0", None),
    ("gpt-6-sol", "GPT-6-Sol", _SIX, 272_000, True, "list", "0.155.0", "priority"),
    ("gpt-6-luna", "GPT-6-Luna", _SIX[:5], 272_000, True, "list", "0.155.0", "priority"),
    ("gpt-5.6-sol", "GPT-5.6-Sol", _SIX, 272_000, True, "list", "0.144.0", None),
    ("gpt-6.1-terra", "GPT-6.1 Terra", _SIX, 500_000, True, "list", "0.153.0", None),
    ("gpt-5.6-terra", "GPT-5.6-Terra", _SIX, 272_000, True, "list", "0.144.0", None),
    ("gpt-5.6-luna", "GPT-5.6-Luna", _SIX[:5], 272_000, True, "list", "0.144.0", None),
    ("gpt-5.5", "GPT-5.5", _SIX[:4], 272_000, False, "list", "0.124.0", None),
    ("codex-auto-review", "Codex Auto Review", _SIX[:5], 272_000, True, "hide", "0.98.0", None),
)


def model_entry(
    slug: str,
    display: str | None = None,
    levels: tuple[str, ...] = _SIX,
    context: int = 272_000,
    lite: bool = True,
    visibility: str = "list",
    min_version: str = "0.153.0",
    tier: str | None = None,
    priority: int = 50,
) -> dict[str, Any]:
    """One `/models` entry with every field the Codex CLI reads (its base instructions shortened)."""
    return {
        "slug": slug,
        "display_name": display or slug,
        "description": f"{display or slug} (fake backend)",
        "default_reasoning_level": "medium" if "medium" in levels else levels[0],
        "supported_reasoning_levels": [{"effort": lv, "description": _LEVEL_TEXT.get(lv, lv)} for lv in levels],
        "shell_type": "shell_command",
        "visibility": visibility,
        "minimal_client_version": min_version,
        "supported_in_api": True,
        "priority": priority,
        "upgrade": None,
        "availability_nux": None,
        "base_instructions": "You are Codex, a coding agent (fake backend).",
        "model_messages": None,
        "supports_reasoning_summaries": True,
        "default_reasoning_summary": "none",
        "support_verbosity": True,
        "default_verbosity": "low",
        "apply_patch_tool_type": "freeform",
        "web_search_tool_type": "text_and_image",
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": True,
        "context_window": context,
        "max_context_window": max(context, 872_000) if lite else context,
        "auto_compact_token_limit": None,
        "effective_context_window_percent": 95,
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"],
        "prefer_websockets": True,
        "use_responses_lite": lite,
        "tool_mode": "code_mode_only" if lite else None,
        "default_service_tier": tier,
        "service_tiers": [{"id": "priority", "name": "Fast", "description": "1.5x speed"}],
        "available_in_plans": ["free", "go", "plus", "pro", "team", "business", "enterprise"],
    }


def cli_catalog() -> list[dict[str, Any]]:
    return [
        model_entry(slug, name, levels, ctx, lite, vis, ver, tier, n + 1)
        for n, (slug, name, levels, ctx, lite, vis, ver, tier) in enumerate(CLI_MODELS)
    ]


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return ()


@dataclass
class FakeCatalog:
    """The backend's model list: what each account may use depends on its plan (account id → plan)."""

    models: list[dict[str, Any]] = field(default_factory=cli_catalog)
    plans: dict[str, str] = field(default_factory=dict)  # chatgpt-account-id -> plan (default plus)
    withheld: dict[str, set[str]] = field(default_factory=lambda: {"go": {"gpt-6-astra"}})  # plan -> slugs it lacks
    fail: str | None = None  # None | "401" | "500" | "html" | "garbage" | "hang"
    requests: list[Received] = field(default_factory=list)  # the /models reads (kept apart from `received`)

    def reset(self) -> None:
        self.models, self.plans, self.fail = cli_catalog(), {}, None
        self.withheld = {"go": {"gpt-6-astra"}}
        self.requests.clear()

    def for_account(self, account_id: str | None, client_version: str | None = None) -> list[dict[str, Any]]:
        lacking = self.withheld.get(self.plans.get(account_id or "", "plus"), set())
        wanted = _version(client_version) if client_version else None
        return [
            m
            for m in self.models
            if m.get("slug") not in lacking and (wanted is None or _version(m.get("minimal_client_version") or "0") <= wanted)
        ]

    def etag(self, account_id: str | None, client_version: str | None = None) -> str:
        data = json.dumps(self.for_account(account_id, client_version), sort_keys=True).encode()
        return f'W/"{hashlib.sha256(data).hexdigest()[:16]}"'

    def refusal(self, account_id: str | None, body: Any) -> JSONReply | None:
        """What the backend refuses of a Responses body: a model the plan lacks, an effort the model does not list."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return None
        model = body["model"]
        if all(m.get("slug") != model for m in self.models):
            return None  # a name the fake does not know: left to the responder
        entry = next((m for m in self.for_account(account_id) if m.get("slug") == model), None)
        if entry is None:
            return detail(400, f"The '{model}' model is not supported when using Codex with a ChatGPT account.")
        effort = body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        levels = [lv["effort"] for lv in entry["supported_reasoning_levels"]]
        if effort is not None and effort not in levels:
            return JSONReply(
                400,
                {
                    "error": {
                        "message": f"Unsupported value: '{effort}' is not supported with the '{model}' model. "
                        f"Supported values are: {', '.join(repr(lv) for lv in levels)}.",
                        "type": "invalid_request_error",
                        "param": "reasoning.effort",
                        "code": "unsupported_value",
                    }
                },
            )
        return None

    def answer(self, req: Received) -> JSONReply | RawReply | None:
        """The answer to `GET /models`, or None to hang."""
        if self.fail == "hang":
            return None
        if self.fail == "401" or not req.headers.get("authorization", "").startswith("Bearer "):
            return unauthorized()
        if self.fail == "500":
            return JSONReply(500, {"error": {"message": "An error occurred while processing your request.", "type": "server_error"}})
        if self.fail == "html":
            page = b"<html><body>Just a moment...</body></html>"  # a challenge page instead of JSON
            return RawReply(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(page), page)
            )
        if self.fail == "garbage":
            return JSONReply(200, {"models": "yes", "data": [1, 2, 3]})
        query = req.path.partition("?")[2]
        version = next((v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "client_version"), None)
        if not version:
            return detail(400, "client_version is required")
        account = req.headers.get("chatgpt-account-id")
        etag = self.etag(account, version)
        if req.headers.get("if-none-match") == etag:
            return JSONReply(304, None, {"etag": etag})
        return JSONReply(200, {"models": self.for_account(account, version)}, {"etag": etag, "x-models-etag": etag})


# ---------------------------------------------------------------------------------------------
# Real-shaped event sequences


class Turn:
    """Builds the event sequence of one model turn, in the order the backend sends it."""

    def __init__(self, model: str = "gpt-5.5", response_id: str | None = None) -> None:
        self.model = model
        self.id = response_id or f"resp_{uuid.uuid4().hex}"  # unique, as the backend's are (clients chain on them)
        self.items: list[tuple[str, Any]] = []
        self.usage = {
            "input_tokens": 42,
            "input_tokens_details": {"cached_tokens": 8},
            "output_tokens": 17,
            "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 59,
        }
        self.status = "completed"
        self.incomplete_reason: str | None = None
        self.fail: dict[str, Any] | None = None
        self.error_event: dict[str, Any] | None = None
        self.service_tier: str | None = None  # echoed in the terminal event when set

    def reasoning(self, *summaries: str, encrypted: str = "gAAAAABfakeEncryptedReasoning==") -> Turn:
        self.items.append(("reasoning", (summaries, encrypted)))
        return self

    def text(self, text: str, deltas: list[str] | None = None) -> Turn:
        self.items.append(("message", (text, deltas)))
        return self

    def tool_call(self, name: str, arguments: dict[str, Any] | str, call_id: str | None = None, deltas: int = 3) -> Turn:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.items.append(("function_call", (name, args, call_id, deltas)))
        return self

    def compaction(self, encrypted: str = "gAAAAABfakeCompactedHistory==") -> Turn:
        """The item a `compaction_trigger` at the end of the input yields: the history, compacted and encrypted."""
        self.items.append(("compaction", encrypted))
        return self

    def tier(self, service_tier: str) -> Turn:
        self.service_tier = service_tier
        return self

    def custom_call(self, name: str, tool_input: str, call_id: str | None = None, deltas: int = 3) -> Turn:
        """A call of a custom (freeform) tool, such as the Codex CLI's `exec` or `apply_patch`."""
        self.items.append(("custom_tool_call", (name, tool_input, call_id, deltas)))
        return self

    def image(self, result: str | None, revised_prompt: str = "A red square.", partial: str | None = None, **options: Any) -> Turn:
        """An `image_generation_call`: `result` is the base64 image (None: the safety system refused it),
        `partial` a partial image sent before it; `options` (size, quality, ...) are echoed on the item."""
        self.items.append(("image", (result, revised_prompt, partial, options)))
        return self

    def incomplete(self, reason: str = "max_output_tokens") -> Turn:
        self.status, self.incomplete_reason = "incomplete", reason
        return self

    def failed(self, code: str = "server_is_overloaded", message: str = "The server is overloaded. Please try again later.") -> Turn:
        self.fail = {"code": code, "message": message}
        return self

    def error(self, code: str = "rate_limit_exceeded", message: str = "Rate limit reached. Please try again in 1.5s.") -> Turn:
        self.error_event = {"type": "error", "error": {"type": "rate_limit_error", "code": code, "message": message}}
        return self

    def events(self, empty_output: bool = True) -> list[tuple[str, dict[str, Any]]]:
        seq = iter(range(10_000))
        ev: list[tuple[str, dict[str, Any]]] = []

        def add(kind: str, **payload: Any) -> None:
            ev.append((kind, {"type": kind, "sequence_number": next(seq), **payload}))

        base = {
            "id": self.id,
            "object": "response",
            "created_at": 1_760_000_000,
            "model": self.model,
            "status": "in_progress",
            "output": [],
            "usage": None,
        }
        add("response.created", response=dict(base))
        add("response.in_progress", response=dict(base))
        done_items = []
        tag = self.id.removeprefix("resp_")[:24]  # item ids are unique across turns too
        for idx, (kind, spec) in enumerate(self.items):
            if kind == "reasoning":
                summaries, encrypted = spec
                item_id = f"rs_{tag}{idx:02d}"
                add("response.output_item.added", output_index=idx, item={"id": item_id, "type": "reasoning", "summary": []})
                for s_idx, summary in enumerate(summaries):
                    add(
                        "response.reasoning_summary_part.added",
                        item_id=item_id,
                        output_index=idx,
                        summary_index=s_idx,
                        part={"type": "summary_text", "text": ""},
                    )
                    for piece in _pieces(summary, 3):
                        add("response.reasoning_summary_text.delta", item_id=item_id, output_index=idx, summary_index=s_idx, delta=piece)
                    add("response.reasoning_summary_text.done", item_id=item_id, output_index=idx, summary_index=s_idx, text=summary)
                    add(
                        "response.reasoning_summary_part.done",
                        item_id=item_id,
                        output_index=idx,
                        summary_index=s_idx,
                        part={"type": "summary_text", "text": summary},
                    )
                item = {
                    "id": item_id,
                    "type": "reasoning",
                    "encrypted_content": encrypted,
                    "summary": [{"type": "summary_text", "text": s} for s in summaries],
                }
            elif kind == "compaction":
                item_id = f"cmp_{idx:04d}"
                add("response.output_item.added", output_index=idx, item={"id": item_id, "type": "compaction"})
                item = {"id": item_id, "type": "compaction", "encrypted_content": spec}
            elif kind == "message":
                text, deltas = spec
                item_id = f"msg_{tag}{idx:02d}"
                add(
                    "response.output_item.added",
                    output_index=idx,
                    item={"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []},
                )
                add(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=idx,
                    content_index=0,
                    part={"type": "output_text", "annotations": [], "text": ""},
                )
                for piece in deltas if deltas is not None else _pieces(text, 4):
                    add("response.output_text.delta", item_id=item_id, output_index=idx, content_index=0, delta=piece, logprobs=[])
                add("response.output_text.done", item_id=item_id, output_index=idx, content_index=0, text=text, logprobs=[])
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
                add("response.content_part.done", item_id=item_id, output_index=idx, content_index=0, part=part)
                item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
            elif kind == "custom_tool_call":
                name, tool_input, call_id, n = spec
                item_id = f"ctc_{idx:04d}"
                call_id = call_id or f"call_{idx:04d}ctc"
                add(
                    "response.output_item.added",
                    output_index=idx,
                    item={
                        "id": item_id,
                        "type": "custom_tool_call",
                        "status": "in_progress",
                        "input": "",
                        "call_id": call_id,
                        "name": name,
                    },
                )
                for piece in _pieces(tool_input, n):
                    add("response.custom_tool_call_input.delta", item_id=item_id, output_index=idx, delta=piece)
                add("response.custom_tool_call_input.done", item_id=item_id, output_index=idx, input=tool_input)
                item = {
                    "id": item_id,
                    "type": "custom_tool_call",
                    "status": "completed",
                    "input": tool_input,
                    "call_id": call_id,
                    "name": name,
                }
            elif kind == "image":
                result, revised, partial, options = spec
                item_id = f"ig_{tag}{idx:02d}"
                add(
                    "response.output_item.added",
                    output_index=idx,
                    item={"id": item_id, "type": "image_generation_call", "status": "in_progress"},
                )
                add("response.image_generation_call.in_progress", item_id=item_id, output_index=idx)
                add("response.image_generation_call.generating", item_id=item_id, output_index=idx)
                if partial is not None:
                    add(
                        "response.image_generation_call.partial_image",
                        item_id=item_id,
                        output_index=idx,
                        partial_image_index=0,
                        partial_image_b64=partial,
                    )
                item = {"id": item_id, "type": "image_generation_call", "status": "completed" if result else "failed", "result": result}
                if result:
                    item.update(
                        {
                            "revised_prompt": revised,
                            "output_format": "png",
                            "size": "1024x1024",
                            "quality": "medium",
                            "background": "opaque",
                            **options,
                        }
                    )
                add("response.image_generation_call.completed", item_id=item_id, output_index=idx)
            else:
                name, args, call_id, n = spec
                item_id = f"fc_{tag}{idx:02d}"
                call_id = call_id or f"call_{idx:04d}abc"
                add(
                    "response.output_item.added",
                    output_index=idx,
                    item={
                        "id": item_id,
                        "type": "function_call",
                        "status": "in_progress",
                        "arguments": "",
                        "call_id": call_id,
                        "name": name,
                    },
                )
                for piece in _pieces(args, n):
                    add("response.function_call_arguments.delta", item_id=item_id, output_index=idx, delta=piece)
                add("response.function_call_arguments.done", item_id=item_id, output_index=idx, arguments=args)
                item = {"id": item_id, "type": "function_call", "status": "completed", "arguments": args, "call_id": call_id, "name": name}
            add("response.output_item.done", output_index=idx, item=item)
            done_items.append(item)
        if self.error_event is not None:
            ev.append(("error", {**self.error_event, "sequence_number": next(seq)}))
            return ev
        if self.fail is not None:
            add("response.failed", response={**base, "status": "failed", "error": self.fail})
            return ev
        final = {**base, "status": self.status, "output": [] if empty_output else done_items, "usage": self.usage}
        if self.service_tier is not None:
            final["service_tier"] = self.service_tier
        if any(kind == "image" and spec[0] for kind, spec in self.items):
            final["tool_usage"] = {"image_gen": dict(fake_images.IMAGE_USAGE)}
        if self.status == "incomplete":
            final["incomplete_details"] = {"reason": self.incomplete_reason}
            add("response.incomplete", response=final)
        else:
            add("response.completed", response=final)
        return ev


def turn(model: str = "gpt-5.5", response_id: str | None = None) -> Turn:
    return Turn(model, response_id)


def _pieces(text: str, n: int) -> list[str]:
    """Split text into about n deltas (at least one)."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)]


LITE_HEADER = "x-openai-internal-codex-responses-lite"


def default_lite(model: str) -> bool:
    """The models that speak only Responses Lite by default: the gpt-5.6 and gpt-6 families."""
    return model.startswith(("gpt-5.6", "gpt-6"))


def form_problem(req: Received, lite: Callable[[str], bool]) -> JSONReply | None:
    """The 400 a Responses Lite model gives a body in the wrong form (codex-2026-12.md §2): a classic
    body (top-level `tools` or `instructions`), or a lite body without the lite header. Classic models
    take the classic form. None when the form is right (or the body is not JSON: the responder says so)."""
    try:
        body = req.json
    except ValueError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not lite(model):
        return None
    for key in ("instructions", "tools"):
        if key in body:
            return detail(
                400,
                f"Unsupported parameter for Responses Lite model '{model}': '{key}'. "
                "Send instructions as a developer message and tools in an additional_tools input item.",
            )
    if req.headers.get(LITE_HEADER, "").lower() != "true":
        return detail(400, f"The '{model}' model requires Responses Lite: send the header '{LITE_HEADER}: true'.")
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools" and not isinstance(item.get("tools"), list):
            return detail(400, "Invalid 'input[].tools': an additional_tools item needs a list of tools.")
    return None


def default_responder(req: Received) -> Reply:
    """Answer with a short reasoning summary and an echo of the last user text."""
    try:
        body = req.json
    except ValueError:
        return detail(400, "Invalid JSON")
    # No "Instructions are required": the Codex CLI 0.169 sends no `instructions`, for classic models too.
    for problem, message in (
        (body.get("store") is not False, "Store must be set to false"),
        (body.get("stream") is not True, "Stream must be set to true"),
        (
            body.get("instructions") is not None and not isinstance(body.get("instructions"), str),
            "Invalid 'instructions': expected a string",
        ),
    ):
        if problem:
            return detail(400, message)
    for name in ("max_output_tokens", "temperature", "top_p", "previous_response_id", "max_completion_tokens", "conversation"):
        if name in body:
            return detail(400, f"Unsupported parameter: {name}")
    tier = body.get("service_tier", "auto")
    if tier not in SERVICE_TIERS:
        return detail(400, f"Invalid service_tier {tier!r}: expected one of {', '.join(SERVICE_TIERS)}")
    served = "priority" if tier == "priority" else "ultrafast" if tier == "ultrafast" else "default"
    if (tool := fake_images.image_tool(body)) is not None:
        if (refused := fake_images.refusal(tool)) is not None:
            return JSONReply(*refused)
        prompt, pictures = fake_images.user_prompt(body)
        picture = fake_images.EDITED if pictures else fake_images.GENERATED
        result = None if fake_images.blocked(prompt) else base64.b64encode(picture).decode()
        partial = base64.b64encode(fake_images.PARTIAL).decode() if tool.get("partial_images") else None
        return sse(
            turn(body.get("model", "gpt-5.5")).image(result, partial=partial).text("Here it is.").tier(served).events(),
            headers=dict(QUOTA_HEADERS),
        )
    items = body.get("input", [])
    if isinstance(items, list) and items and isinstance(items[-1], dict) and items[-1].get("type") == "compaction_trigger":
        # remote compaction (v2): exactly one `compaction` item, no message
        return sse(
            turn(body.get("model", "gpt-5.5")).reasoning("Compacting.").compaction().tier(served).events(), headers=dict(QUOTA_HEADERS)
        )
    last = ""
    for item in body.get("input", []):
        if not isinstance(item, dict):
            return detail(400, "Invalid 'input': expected an array of objects")
        if item.get("type") == "item_reference":  # with store=false the backend keeps no item to refer to
            return JSONReply(
                404,
                {
                    "error": {
                        "message": f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is set to false.",
                        "type": "invalid_request_error",
                        "param": "input",
                        "code": None,
                    }
                },
            )
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                last = content
            elif isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
                last = "".join(p.get("text", "") for p in content)
            else:
                return detail(400, "Invalid 'input[].content': expected a string or content parts")
    return sse(
        turn(body.get("model", "gpt-5.5")).reasoning("Thinking about it.").text(f"You said: {last}").tier(served).events(),
        headers=dict(QUOTA_HEADERS),
    )


# ---------------------------------------------------------------------------------------------
# The WebSocket transport


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RATE_LIMITS_EVENT = {
    "type": "codex.rate_limits",
    "plan_type": "plus",
    "rate_limits": {
        "primary": {"used_percent": 7.5, "window_minutes": 300, "reset_after_seconds": 9000},
        "secondary": {"used_percent": 40.0, "window_minutes": 10080, "reset_after_seconds": 300000},
    },
}


@dataclass
class WSFrame:
    """A client frame the fake received on socket number `socket` (counted from 1)."""

    socket: int
    headers: dict[str, str]  # the socket's handshake headers
    frame: Any  # parsed JSON (or the raw text when it is not JSON)


@dataclass
class WSError:
    """An `error` frame as the backend sends it."""

    status: int
    error: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # then close the socket (1000), as after the connection limit


@dataclass
class WSClose:
    """Drop the socket abruptly (no close frame), optionally after `after` events of the turn."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    after: int = 0


WSReply = list | WSError | WSClose


def ws_usage_limit(resets_in: int = 3600) -> WSError:
    return WSError(
        429,
        {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": "plus",
            "resets_at": int(time.time()) + resets_in,
            "resets_in_seconds": resets_in,
        },
        {"x-codex-primary-used-percent": "100", "x-codex-primary-window-minutes": "300"},
    )


def ws_connection_limit() -> WSError:
    return WSError(
        400,
        {
            "type": "invalid_request_error",
            "code": "websocket_connection_limit_reached",
            "message": "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.",
        },
        close=True,
    )


def _ws_echo(body: dict[str, Any], response_id: str) -> list[tuple[str, dict[str, Any]]]:
    last = ""
    for item in body.get("input", []):
        if isinstance(item, dict) and item.get("role") == "user" and isinstance(item.get("content"), list):
            last = "".join(p.get("text", "") for p in item["content"] if isinstance(p, dict))
    return turn(body.get("model", "gpt-5.5"), response_id).text(f"You said: {last}").events(empty_output=False)


# ---------------------------------------------------------------------------------------------
# The server


class CodexBackend:
    """Start with `with CodexBackend() as backend:` (or `.start()` / `.stop()`)."""

    def __init__(
        self, responder: Callable[[Received], Reply] = default_responder, lite: Callable[[str], bool] | Collection[str] = default_lite
    ) -> None:
        self.responder = responder
        self.lite = lite  # which models speak only Responses Lite: a predicate or a set of slugs
        self.replies: list[Reply] = []  # answered first, in order, before the responder
        self.received: list[Received] = []
        self.disconnects = 0  # streams whose client went away before the end
        self.pages: dict[str, JSONReply] = {}  # other chatgpt.com paths (no query) -> answer; else 404
        self.catalog = FakeCatalog()  # GET /models, and what Responses calls are refused for (plan, effort)
        self.images = fake_images.FakeImages()  # the native image endpoints (plans as in `catalog.plans`)
        self.ws_handshakes: list[JSONReply] = []  # refusals of the next upgrades, in order (else 101)
        self.ws_replies: list[WSReply | Callable[[dict[str, Any]], WSReply]] = []  # per response.create, in order; else an echo
        self.ws_responder: Callable[[dict[str, Any]], WSReply] | None = None  # when ws_replies is empty (else an echo)
        self.ws_frames: list[WSFrame] = []
        self.ws_sockets = 0
        self.ws_closes: list[tuple[int, int | None]] = []  # (socket, close code from the client; None: dropped)
        self.wham_usage: dict[str, float] = {}  # account id -> used_percent of both windows in GET /backend-api/wham/usage (default 10)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-codex")
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backend-api/codex"

    def start(self) -> CodexBackend:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def _close() -> None:
            self._server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # handlers still streaming or stalling
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> CodexBackend:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _next_reply(self, req: Received) -> Reply:
        if self.replies:
            reply = self.replies.pop(0)
            return reply(req) if callable(reply) else reply
        return self.responder(req)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    return
                if req.method == "GET" and req.path.split("?")[0] == MODELS_PATH:
                    self.catalog.requests.append(req)
                    answer = self.catalog.answer(req)
                    if answer is None:
                        try:
                            await asyncio.sleep(3600)  # a hung catalog read
                        except asyncio.CancelledError:
                            pass  # the server stops
                        return
                    if isinstance(answer, RawReply):
                        writer.write(answer.data)
                        await writer.drain()
                        return
                    await _write_json(writer, answer)
                    continue
                self.received.append(req)
                if req.method == "GET" and req.path.split("?")[0] == WHAM_USAGE_PATH:
                    account = req.headers.get("chatgpt-account-id")
                    if not req.headers.get("authorization", "").startswith("Bearer ") or not account:
                        await _write_json(writer, JSONReply(401, {"detail": "Unauthorized"}))
                    else:
                        await _write_json(writer, JSONReply(200, wham_usage(self.wham_usage.get(account, 10.0))))
                    continue
                if req.method == "GET" and req.path.split("?")[0] == PATH and req.headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(reader, writer, req)
                    return
                account = req.headers.get("chatgpt-account-id")
                plan = self.catalog.plans.get(account or "", "plus")
                if req.method == "POST" and req.path.split("?")[0] in (
                    PATH.removesuffix("responses") + "images/generations",
                    PATH.removesuffix("responses") + "images/edits",
                ):
                    try:
                        image_body = json.loads(req.body)
                    except ValueError:
                        image_body = None
                    await _write_json(writer, JSONReply(*self.images.answer(req.path.split("?")[0], image_body, plan)))
                    continue
                if req.method == "POST" and plan == "free" and b"image_generation" in req.body:
                    req = _strip_image_tool(req)  # free plans lose the image tool silently
                if req.method != "POST" or req.path.split("?")[0] != PATH:
                    await _write_json(writer, self.pages.get(req.path.split("?")[0], JSONReply(404, {"detail": "Not Found"})))
                    continue
                lite = self.lite if callable(self.lite) else self.lite.__contains__
                refusal = form_problem(req, lite)  # refused before any queued reply is used, as upstream would
                if refusal is None:
                    try:
                        refusal = self.catalog.refusal(req.headers.get("chatgpt-account-id"), json.loads(req.body))
                    except ValueError:
                        refusal = None
                account = req.headers.get("chatgpt-account-id")
                reply = refusal or self._next_reply(req)
                if isinstance(reply, JSONReply):
                    await _write_json(writer, reply)
                    continue
                if isinstance(reply, RawReply):
                    writer.write(reply.data)
                    await writer.drain()
                    writer.transport.abort()
                    return
                if not await self._write_sse(writer, reply, self.catalog.etag(account)):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnects += 1
        finally:
            writer.close()

    async def _websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: Received) -> None:
        """Serve one Responses WebSocket until either side closes it."""
        import wsproto.connection
        import wsproto.events

        if self.ws_handshakes:
            await _write_json(writer, self.ws_handshakes.pop(0))
            return
        self.ws_sockets += 1
        number = self.ws_sockets
        accept = base64.b64encode(hashlib.sha1(req.headers.get("sec-websocket-key", "").encode() + WS_GUID).digest()).decode()
        head = [
            "HTTP/1.1 101 Switching Protocols",
            "upgrade: websocket",
            "connection: Upgrade",
            f"sec-websocket-accept: {accept}",
            f"x-codex-turn-state: ts-{number}",
            "x-models-etag: etag-fake-1",
            "openai-model: gpt-5.5",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        conn = wsproto.connection.Connection(wsproto.connection.ConnectionType.SERVER)
        history: dict[str, list[Any]] = {}  # response id -> the socket's whole context after it
        text: list[str] = []
        turns = 0

        def send(event: dict[str, Any]) -> None:
            writer.write(conn.send(wsproto.events.TextMessage(json.dumps(event, ensure_ascii=False))))

        while True:
            data = await reader.read(65536)
            if not data:
                self.ws_closes.append((number, None))
                return
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, wsproto.events.CloseConnection):
                    self.ws_closes.append((number, event.code))
                    writer.write(conn.send(event.response()))
                    await writer.drain()
                    return
                if isinstance(event, wsproto.events.Ping):
                    writer.write(conn.send(event.response()))
                    continue
                if isinstance(event, wsproto.events.BytesMessage):
                    writer.write(conn.send(wsproto.events.CloseConnection(1003, "binary frames are not supported")))
                    await writer.drain()
                    return
                text.append(event.data)
                if not event.message_finished:
                    continue
                raw, text = "".join(text), []
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = raw
                self.ws_frames.append(WSFrame(number, req.headers, frame))
                if not isinstance(frame, dict) or frame.get("type") != "response.create":
                    send({"type": "error", "status": 400, "error": {"type": "invalid_request_error", "message": "Unsupported frame"}})
                    continue
                turns += 1
                refusal = _ws_refusal(frame, history)
                if refusal is not None:
                    send(refusal)
                    continue
                reply = self.ws_replies.pop(0) if self.ws_replies else self.ws_responder
                if callable(reply):
                    reply = reply(frame)
                if reply is None:
                    reply = _ws_echo(frame, f"resp_ws{number}_{turns}")
                if isinstance(reply, WSError):
                    send({"type": "error", "status": reply.status, "error": reply.error, "headers": reply.headers})
                    if reply.close:
                        writer.write(conn.send(wsproto.events.CloseConnection(1000, "")))
                        await writer.drain()
                        return
                    continue
                if isinstance(reply, WSClose):
                    for _, ev in reply.events[: reply.after]:
                        send(ev)
                    await writer.drain()
                    writer.transport.abort()
                    self.ws_closes.append((number, None))
                    return
                send(RATE_LIMITS_EVENT)
                context = list(history.get(frame.get("previous_response_id"), [])) + list(frame.get("input") or [])
                for _, ev in reply:
                    send(ev)
                    await writer.drain()
                    if ev.get("type") == "response.completed":
                        response = ev["response"]
                        history[response["id"]] = context + list(response.get("output") or [])
            await writer.drain()

    async def _write_sse(self, writer: asyncio.StreamWriter, reply: SSEReply, models_etag: str = "") -> bool:
        """Stream the reply; False when the connection was closed (cut, or client gone)."""
        if reply.stall:
            await asyncio.sleep(reply.stall)
        head = [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream; charset=utf-8",
            "transfer-encoding: chunked",
            "cache-control: no-cache",
            "x-request-id: req_fake",
            f"x-models-etag: {models_etag}",
        ]
        if reply.gzip:
            head.append("content-encoding: gzip")
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        nl = "\r\n" if reply.crlf else "\n"
        frames = []
        for n, (kind, payload) in enumerate(reply.events):
            frames.append(f"event: {kind}{nl}data: {json.dumps(payload, ensure_ascii=False)}{nl}{nl}".encode())
            if reply.keepalive_every and (n + 1) % reply.keepalive_every == 0:
                frames.append(f": keep-alive{nl}{nl}".encode())
        if reply.cut_after is not None:
            frames = frames[: reply.cut_after]
        rng = random.Random(reply.seed)
        if reply.pause_after is not None:  # the frames before the pause leave whole, then silence
            n, pause = reply.pause_after
            pieces = [b"".join(frames[:n]), b"", *_chunk(frames[n:], reply.chunking, rng)]
        else:
            pieces = _chunk(frames, reply.chunking, rng)
        if reply.gzip:
            pieces = [gzip.compress(b"".join(pieces))]
        writes = [b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"" for piece in pieces]
        if reply.chunking == "burst":  # every HTTP chunk in one send(): a proxy reads many of them at once
            writes = [b"".join(writes)]
        try:
            for piece in writes:
                if not piece:
                    await asyncio.sleep(pause)
                    continue
                writer.write(piece)
                await writer.drain()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                elif reply.chunking == "awkward":
                    await asyncio.sleep(0.0005)  # let each piece leave as its own TCP segment
            if reply.cut_after is not None:
                writer.transport.abort()
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            self.disconnects += 1
            return False
        return True


def _ws_refusal(frame: dict[str, Any], history: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The real backend's refusals on a socket: an id it does not hold, and items it already holds."""
    previous = frame.get("previous_response_id")
    if previous is None:
        return None
    if previous not in history:
        return {
            "type": "error",
            "status": 400,
            "error": {
                "type": "invalid_request_error",
                "code": "previous_response_not_found",
                "message": f"Previous response with id '{previous}' not found.",
                "param": "previous_response_id",
            },
        }
    held = history[previous]
    ids = {item.get("id") for item in held if isinstance(item, dict) and item.get("id")}
    for item in frame.get("input") or []:
        if isinstance(item, dict) and (item.get("id") in ids or item in held):
            return {
                "type": "error",
                "status": 400,
                "error": {
                    "type": "invalid_request_error",
                    "code": None,
                    "param": "input",
                    "message": f"Duplicate item found with id {item.get('id') or 'msg'}.",
                },
            }
    return None


def _strip_image_tool(req: Received) -> Received:
    try:
        body = json.loads(req.body)
    except ValueError:
        return req
    if isinstance(body, dict) and isinstance(body.get("tools"), list):
        body["tools"] = [t for t in body["tools"] if not (isinstance(t, dict) and t.get("type") == "image_generation")]
        if isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("type") == "image_generation":
            body["tool_choice"] = "auto"
    return Received(req.method, req.path, req.headers, json.dumps(body).encode())


def _chunk(frames: list[bytes], mode: str, rng: random.Random) -> list[bytes]:
    if mode == "whole":
        return [b"".join(frames)]
    if mode in ("frames", "burst"):
        return frames
    # awkward: cut inside frames at random points, sometimes right after a \r or inside a
    # multi-byte character, and sometimes glue the tail of one frame to the head of the next.
    data = b"".join(frames)
    out, i = [], 0
    while i < len(data):
        size = rng.choice((1, 2, 3, 7, 13, 40, 97, 300))
        out.append(data[i : i + size])
        i += size
    return out


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        line = await reader.readline()
    except ConnectionError:
        return None
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    elif (length := int(headers.get("content-length", "0"))) > 0:
        body = await reader.readexactly(length)
    return Received(method, path, headers, body)


async def _write_json(writer: asyncio.StreamWriter, reply: JSONReply) -> None:
    body = json.dumps(reply.body).encode() if reply.status != 304 else b""
    reason = {
        200: "OK",
        304: "Not Modified",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }.get(reply.status, "Error")
    head = [f"HTTP/1.1 {reply.status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in reply.headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
