"""Rules every request body sent to the Codex backend must follow, and the two forms a body takes.

Classic form: top-level `instructions` and `tools`. Responses Lite (models whose catalog entry says
`use_responses_lite`, every current model but gpt-5.5): no `instructions` and no top-level `tools`;
the prompt is a `developer` message and the tools travel in an `additional_tools` input item, with
`parallel_tool_calls: false`, `reasoning.context: "all_turns"` and the header `LITE_HEADER`, as the
official Codex CLI sends it. The Codex CLI also sends `reasoning.summary` in the lite form when asked
for summaries (`model_reasoning_summary`), so a summary is kept there. Answers are the same in both
forms: the backend names a called tool by its plain name (`exec`, not `functions.exec`), which is what
the CLI expects, so answers map back as for the classic form.
"""

from __future__ import annotations

import functools
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
LITE_HEADER = "x-openai-internal-codex-responses-lite"
#: The namespace a lite body declares the client's functions in (as the Codex CLI does).
LITE_NAMESPACE = "functions"
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
    headers: dict[str, str] = field(default_factory=dict)  # extra upstream headers the body's form needs (the lite header)


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


def backend_rules(body: dict[str, Any]) -> dict[str, Any]:
    """The backend's hard rules, and nothing else (in place): rejected fields out, the service tier in
    the backend's words, `store: false`, `stream: true`, the client's `include` list merged with the one
    the backend needs."""
    for name in REJECTED_FIELDS:
        body.pop(name, None)
    if tier := service_tier(body.pop("service_tier", None)):
        body["service_tier"] = tier
    body["store"] = False
    body["stream"] = True
    asked = got if isinstance(got := body.get("include"), list) else []
    body["include"] = [*dict.fromkeys(x for x in asked if isinstance(x, str))] + [x for x in INCLUDE if x not in asked]
    return body


def finalize(body: dict[str, Any], lite: bool = False) -> dict[str, Any]:
    """A translated body (built in classic form) made ready for the backend (in place): the hard
    rules, then the classic form's details or the conversion to Responses Lite."""
    backend_rules(body)
    if not body.get("tools"):
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    if lite:
        return to_lite(body)
    if not isinstance(body.get("instructions"), str):
        body["instructions"] = ""
    return body


def to_lite(body: dict[str, Any]) -> dict[str, Any]:
    """Turn a classic-form body into the Responses Lite form (in place), as the Codex CLI builds it:
    `instructions` becomes a leading `developer` message, top-level `tools` an `additional_tools`
    item whose `functions` namespace holds the function and custom tools (namespace and built-in
    tools sit beside it), `parallel_tool_calls: false`, `reasoning.context: "all_turns"`.
    A client's `tool_choice` is kept (`auto` when it set none)."""
    lead: list[dict[str, Any]] = []
    tools = body.pop("tools", None)
    if isinstance(tools, list) and tools:
        functions = [t for t in tools if isinstance(t, dict) and t.get("type") in ("function", "custom")]
        others = [t for t in tools if not (isinstance(t, dict) and t.get("type") in ("function", "custom"))]
        declared = ([{"type": "namespace", "name": LITE_NAMESPACE, "description": "", "tools": functions}] if functions else []) + others
        lead.append({"type": "additional_tools", "role": "developer", "tools": declared})
        body.setdefault("tool_choice", "auto")
        body["parallel_tool_calls"] = False
    instructions = body.pop("instructions", None)
    if isinstance(instructions, str) and instructions:
        lead.append({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": instructions}]})
    if lead:
        body["input"] = lead + list(body.get("input") or [])
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") != "none":
        body["reasoning"] = {**reasoning, "context": reasoning.get("context", "all_turns")}
    return body


def is_lite_form(body: dict[str, Any]) -> bool:
    """A body already in the lite form: no classic `instructions`/`tools`, or an `additional_tools` item."""
    items = got if isinstance(got := body.get("input"), list) else []
    has_item = any(isinstance(i, dict) and i.get("type") == "additional_tools" for i in items)
    return has_item or ("instructions" not in body and not body.get("tools"))


def declared_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tool a body declares, in either form, namespaces flattened (for token estimates)."""
    found: list[dict[str, Any]] = []

    def add(tools: Any) -> None:
        for tool in tools if isinstance(tools, list) else []:
            if isinstance(tool, dict) and tool.get("type") == "namespace":
                add(tool.get("tools"))
            elif isinstance(tool, dict):
                found.append(tool)

    add(body.get("tools"))
    for item in got if isinstance(got := body.get("input"), list) else []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            add(item.get("tools"))
    return found


def lite_headers(lite: bool) -> dict[str, str]:
    return {LITE_HEADER: "true"} if lite else {}


#: `json.dumps(parts, sort_keys=True, default=str)`, with the encoder built once rather than per call
_canonical = json.JSONEncoder(sort_keys=True, default=str).encode


def derived_cache_key(*parts: Any) -> str:
    """A stable prompt cache key for a conversation: same opening → same key → cache hits."""
    return _key_of(hashlib.sha256(_canonical(parts).encode()).hexdigest())


@functools.lru_cache(maxsize=512)
def _key_of(digest: str) -> str:
    # A conversation's turns share their opening, so its UUID is worked out once (entries are small).
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
