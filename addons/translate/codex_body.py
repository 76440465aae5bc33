"""Rules every request body sent to the Codex backend must follow (it rejects unknown and sampling fields with a 400, and requires `store: false` and `stream: true`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from cliproxy.addons.translate import errors
from cliproxy.addons.translate.models import Catalog, EffortError, clamp_effort, normalize_effort

#: Fields the backend rejects; removed from every request. The token limits among them are honoured
#: locally (`translate.limits`); set logprobs are refused with a 400 before, unset ones are dropped here.
REJECTED_FIELDS = (
    "max_output_tokens",
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "truncation",
    "user",
    "context_management",
    "prompt_cache_retention",
    "prompt_cache_options",
    "safety_identifier",
    "previous_response_id",  # expanded from cliproxy's store before this (the backend keeps nothing)
    "conversation",  # likewise
    "stream_options",
    "generate",
    "background",
    "metadata",
    "n",
    "top_logprobs",
    "logprobs",
)
INCLUDE = ["reasoning.encrypted_content"]
MAX_TOOL_NAME = 64
_CACHE_NAMESPACE = uuid.UUID("5b3f6c1e-3f5e-4d7a-9a51-4a1d9c0c7e11")


@dataclass(slots=True)
class Settings:
    """The parts of the config that shape translation."""

    catalog: Catalog = field(default_factory=Catalog.default)
    default_effort: str = "medium"
    reasoning_summary: str = "auto"  # requested from upstream when reasoning is shown; "none" = never
    chat_reasoning: str = "reasoning_content"  # how /v1/chat/completions shows reasoning: reasoning_content | think-tags | hidden


@dataclass(slots=True)
class CodexCall:
    """A translated client request: the Codex body plus what translating the answer needs."""

    body: dict[str, Any]
    stream: bool  # the client wants a stream (the backend always streams)
    model: str  # upstream slug
    effort: str
    options: dict[str, Any] = field(default_factory=dict)  # plain values for the route's stream translator and aggregator
    clamped_from: str | None = None  # the effort asked for, when the model's levels did not hold it


@dataclass(slots=True)
class Resolved:
    model: str  # upstream slug
    effort: str
    clamped_from: str | None = None  # the effort asked for (or the default), when the model's levels did not hold it


def resolve_model(settings: Settings, requested: Any, body_effort: Any = None) -> Resolved:
    """Model slug and clamped effort; the suffix beats the body, the body beats the default."""
    if not isinstance(requested, str) or not requested.strip():
        raise errors.bad_request("`model` is required and must be a non-empty string", "model")
    choice = settings.catalog.resolve(requested)
    try:
        effort = normalize_effort(choice.suffix_effort) if choice.suffix_effort else None
        if effort is None and body_effort is not None:
            effort = normalize_effort(body_effort)
    except EffortError as exc:
        raise errors.bad_request(str(exc), "reasoning_effort") from None
    wanted = effort or settings.default_effort
    effort = clamp_effort(wanted, settings.catalog.info(choice.model), settings.default_effort)
    return Resolved(choice.model, effort, wanted if wanted not in (effort, "auto") else None)


def reasoning_block(effort: str, summary: str | None) -> dict[str, Any]:
    block: dict[str, Any] = {"effort": effort}
    if summary and summary != "none" and effort != "none":
        block["summary"] = summary
    return block


#: Service tiers clients may ask for → what the backend calls them. `fast` is the name the Codex CLI's
#: UI and several peers use for `priority`; `ultrafast` exists for some models (the backend refuses it
#: for the others). Any other tier (`auto`, `default`, `flex`, …) is dropped: the backend serves its default.
SERVICE_TIERS = {"fast": "priority", "priority": "priority", "ultrafast": "ultrafast"}


def service_tier(value: Any) -> str | None:
    """The backend's name for a requested service tier, or None for its default."""
    return SERVICE_TIERS.get(value.strip().lower()) if isinstance(value, str) else None


def finalize(body: dict[str, Any]) -> dict[str, Any]:
    """Apply the backend's hard rules to a Responses-format body (in place) and return it."""
    for name in REJECTED_FIELDS:
        body.pop(name, None)
    if tier := service_tier(body.pop("service_tier", None)):
        body["service_tier"] = tier
    if not isinstance(body.get("instructions"), str):
        body["instructions"] = ""
    body["store"] = False
    body["stream"] = True
    body["include"] = list(INCLUDE)
    if not body.get("tools"):
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    return body


def derived_cache_key(*parts: Any) -> str:
    """A stable prompt cache key for a conversation: same opening → same key → cache hits."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return str(uuid.uuid5(_CACHE_NAMESPACE, digest))


def shorten_tool_names(names: list[str]) -> dict[str, str]:
    """Map over-long tool names to ≤64-char unique ones. Returns {short: original} for those changed."""
    taken = {n for n in names if len(n) <= MAX_TOOL_NAME}
    mapping: dict[str, str] = {}
    for name in names:
        if len(name) <= MAX_TOOL_NAME or name in mapping.values():
            continue
        base = name
        if name.startswith("mcp__") and "__" in name[5:]:
            base = "mcp__" + name.rsplit("__", 1)[1]
        base = base[:MAX_TOOL_NAME]
        short, n = base, 1
        while short in taken:
            suffix = f"_{n}"
            short = base[: MAX_TOOL_NAME - len(suffix)] + suffix
            n += 1
        taken.add(short)
        mapping[short] = name
    return mapping


def rename_builtin_tools(tools: list[Any]) -> list[Any]:
    """`web_search_preview*` is spelled `web_search` on this backend."""
    out = []
    for tool in tools:
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search_preview"):
            tool = {**tool, "type": "web_search"}
        out.append(tool)
    return out
