"""Anthropic Messages (Claude Code, the Anthropic SDKs) → Codex Responses: requests and token counts.

Request (`request_to_codex`): `system` becomes a developer message (Claude
Code's `x-anthropic-billing-header:` block is skipped), mid-conversation `system` messages become
developer messages, content blocks become Responses parts and items (`tool_use` → `function_call`,
`tool_result` → `function_call_output`, thinking blocks whose signature is a Codex reasoning token
`gAAAA…` → `reasoning` items, others dropped). `thinking` picks the effort: `enabled` budget →
`budget_to_effort`, `adaptive`/`auto` → `output_config.effort` or `xhigh`, `disabled` → the model's
lowest level, none → `output_config.effort` or the configured default. A summary is requested when
thinking is on and its display is not `omitted`; thinking blocks are only returned when thinking is on.

Models: Claude names are served by Codex models. Exact `model-aliases` entries and catalog ids win;
otherwise a name containing `opus` or `sonnet` → `gpt-6.1-sol` (the Codex CLI's default), `haiku` →
`gpt-6-luna` (the current small model, served at the fast tier by default, as haiku is the fast one).
Override a whole family with a `model-aliases` key named after it (`sonnet: gpt-6-sol`). A `[1m]` style
context suffix is ignored. The effort comes from `thinking`/`output_config` as above (Claude Code
sends `output_config.effort: high` for opus and sonnet), or from a `(level)` suffix on the name.

The answer side (stream and aggregation) is in `anthropic_stream`.

Token counting (`count_tokens`, no tokenizer available): the request is translated as for a real
call and every string the model would read is costed per character class, with rates fitted to
o200k_base counts of real Claude Code prompts and tool schemas, code, Markdown, JSON and
Chinese/Japanese/Russian text (within ±15% on each sample): ASCII letters 0.21 token, digits 0.86,
punctuation 0.40, whitespace 0.21; other characters 0.2 (2-byte UTF-8, e.g. Cyrillic) up to 1.0
(3-4 bytes, e.g. CJK). Plus 4 tokens per input item, 8 per tool, 800 per image, 1,500 per PDF page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import string
from typing import Any

from cliproxy.addons.translate import codex_body, errors, limits
from cliproxy.addons.translate.models import Catalog, EffortError, normalize_effort

#: Codex model serving each Claude family when no alias says otherwise.
FAMILY_DEFAULTS = {"opus": "gpt-6.1-sol", "sonnet": "gpt-6.1-sol", "haiku": "gpt-6-luna"}
SIGNATURE_PREFIX = "gAAAA"  # Codex reasoning tokens (Fernet); other signatures are Claude's own
BILLING_PREFIX = "x-anthropic-billing-header:"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
#: History blocks with no Codex counterpart; dropped without complaint.
DROPPED_BLOCKS = frozenset(
    (
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    )
)
_CONTEXT_SUFFIX = re.compile(r"\[\d+[km]\]$", re.IGNORECASE)
_PAREN_SUFFIX = re.compile(r"\([^()]*\)$")
_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")


# ---------------------------------------------------------------------------------------------
# Request: model, effort, ids


def codex_model(requested: Any, catalog: Catalog) -> Any:
    """The model name to resolve for a Claude client: aliases and catalog ids first, then families."""
    if not isinstance(requested, str):
        return requested
    name = _CONTEXT_SUFFIX.sub("", requested.strip())
    choice = catalog.resolve(name)
    base = _PAREN_SUFFIX.sub("", name).strip().lower() if choice.suffix_effort else name.lower()
    if catalog.info(choice.model) is not None or base in catalog.aliases:
        return name
    for family, default in FAMILY_DEFAULTS.items():
        if family in base:
            target = catalog.aliases.get(family, default)
            return f"{target}({choice.suffix_effort})" if choice.suffix_effort else target
    return name


def _effort(body: dict[str, Any]) -> tuple[str | None, bool, bool]:
    """(requested effort or None, thinking on, summary wanted) from `thinking` and `output_config`."""
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise errors.bad_request("`output_config` must be an object", "output_config")
    wanted = (config or {}).get("effort")
    if wanted is not None:
        try:
            wanted = normalize_effort(wanted)
        except EffortError:
            raise errors.bad_request(
                "`output_config.effort` must be one of low, medium, high, xhigh, max", "output_config.effort"
            ) from None
    thinking = body.get("thinking")
    if thinking is None:
        return wanted, False, False
    if not isinstance(thinking, dict):
        raise errors.bad_request('`thinking` must be an object such as {"type": "adaptive"}', "thinking")
    kind = thinking.get("type")
    display = thinking.get("display")
    if display not in (None, "summarized", "omitted"):
        raise errors.bad_request('`thinking.display` must be "summarized" or "omitted"', "thinking.display")
    summary = display != "omitted"
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
            raise errors.bad_request("`thinking.budget_tokens` must be an integer of at least 1024", "thinking.budget_tokens")
        return normalize_effort(budget), True, summary
    if kind in ("adaptive", "auto"):
        return wanted or "xhigh", True, summary
    if kind == "disabled":
        return "none", False, False
    raise errors.bad_request("`thinking.type` must be enabled, adaptive or disabled", "thinking.type")


def safe_id(value: str) -> str:
    """A tool-use id Anthropic and Codex both accept: `^[a-zA-Z0-9_-]+$`, at most 64 chars."""
    clean = _UNSAFE_ID.sub("_", value) or "toolu_empty"
    if len(clean) > 64:
        clean = clean[:47] + "_" + hashlib.sha256(value.encode()).hexdigest()[:16]
    return clean


def _short_history_name(name: str) -> str:
    return name if len(name) <= codex_body.MAX_TOOL_NAME else name[:47] + "_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _session_of(metadata: Any) -> str | None:
    """Claude Code's session id from `metadata.user_id` (JSON, or `…_session_<uuid>`)."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return None
    try:
        parsed = json.loads(user_id)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str) and parsed["session_id"]:
        return parsed["session_id"]
    m = re.search(r"_session_([0-9a-fA-F-]{8,})", user_id)
    return m[1] if m else None


# ---------------------------------------------------------------------------------------------
# Request: tools


def _schema(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise errors.bad_request(f"{where}.input_schema must be a JSON Schema object", "tools")
    schema = {k: v for k, v in raw.items() if k != "$schema"}
    if schema.get("type") != "object":
        schema["type"] = "object"
    if not isinstance(schema.get("properties"), dict):
        schema["properties"] = {}
    return schema


def _web_search(tool: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "web_search"}
    if isinstance(tool.get("allowed_domains"), list) and tool["allowed_domains"]:
        out["filters"] = {"allowed_domains": [d for d in tool["allowed_domains"] if isinstance(d, str)]}
    if isinstance(tool.get("user_location"), dict):
        out["user_location"] = {k: v for k, v in tool["user_location"].items() if v is not None}
    return out


def _tools(raw: Any) -> tuple[list[dict[str, Any]], dict[str, str], set[str]]:
    """Codex tools, {short: original} for shortened names, and the web-search tool names."""
    if raw is None:
        return [], {}, set()
    if not isinstance(raw, list):
        raise errors.bad_request("`tools` must be an array", "tools")
    custom: list[tuple[dict[str, Any], str]] = []
    web: list[dict[str, Any]] = []
    web_names: set[str] = set()
    pictures: list[dict[str, Any]] = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise errors.bad_request(f"{where} must be an object", "tools")
        kind = tool.get("type")
        if kind in (None, "custom"):
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise errors.bad_request(f"{where}.name is required", "tools")
            custom.append((tool, where))
        elif isinstance(kind, str) and kind.startswith("web_search_"):
            web.append(_web_search(tool))
            web_names.add(name if isinstance(name := tool.get("name"), str) else "web_search")
        elif kind == "image_generation":  # cliproxy's extension: the backend's image tool, as the Responses API spells it
            pictures.append({k: v for k, v in tool.items() if k != "name"})
        else:
            raise errors.bad_request(
                f"{where}: tool type {kind!r} is not available through cliproxy; declare it as a custom tool "
                "(name, description, input_schema) or use web_search or image_generation",
                "tools",
            )
    short = codex_body.shorten_tool_names([t["name"] for t, _ in custom])
    short_of = {orig: s for s, orig in short.items()}
    out: list[dict[str, Any]] = []
    for tool, where in custom:
        entry: dict[str, Any] = {"type": "function", "name": short_of.get(tool["name"], tool["name"])}
        if isinstance(tool.get("description"), str):
            entry["description"] = tool["description"]
        entry["parameters"] = _schema(tool.get("input_schema"), where)
        entry["strict"] = False
        out.append(entry)
    return out + web[:1] + pictures[:1], short, web_names


def _tool_choice(choice: Any, short_of: dict[str, str], names: set[str], web_names: set[str]) -> tuple[Any, bool]:
    """(Codex tool_choice, parallel_tool_calls)."""
    if choice is None:
        return "auto", True
    if not isinstance(choice, dict):
        raise errors.bad_request('`tool_choice` must be an object such as {"type": "auto"}', "tool_choice")
    parallel = not choice.get("disable_parallel_tool_use", False)
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        name = choice.get("name")
        if isinstance(name, str) and name in web_names:
            return {"type": "web_search"}, parallel
        if not isinstance(name, str) or name not in names:
            raise errors.bad_request(f"`tool_choice.name` {name!r} is not one of the declared tools", "tool_choice")
        return {"type": "function", "name": short_of.get(name, name)}, parallel
    raise errors.bad_request("`tool_choice.type` must be auto, any, tool or none", "tool_choice")


# ---------------------------------------------------------------------------------------------
# Request: messages


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    if not isinstance(src, dict):
        raise errors.bad_request(f"{where}.source is required", "messages")
    if src.get("type") == "base64":
        mime, data = src.get("media_type"), src.get("data")
        if mime not in IMAGE_TYPES or not isinstance(data, str) or not data:
            raise errors.bad_request(f"{where}.source needs media_type (one of {', '.join(IMAGE_TYPES)}) and base64 data", "messages")
        return {"type": "input_image", "image_url": f"data:{mime};base64,{data}"}
    if src.get("type") == "url" and isinstance(src.get("url"), str) and src["url"]:
        return {"type": "input_image", "image_url": src["url"]}
    raise errors.bad_request(f"{where}.source.type must be base64 or url (file ids are not available through cliproxy)", "messages")


def _document(block: dict[str, Any], where: str) -> list[dict[str, Any]]:
    src = block.get("source")
    if not isinstance(src, dict):
        raise errors.bad_request(f"{where}.source is required", "messages")
    title = block.get("title") if isinstance(block.get("title"), str) else None
    kind = src.get("type")
    if kind == "base64" and src.get("media_type") == "application/pdf" and isinstance(src.get("data"), str):
        return [{"type": "input_file", "filename": f"{title or 'document'}.pdf", "file_data": f"data:application/pdf;base64,{src['data']}"}]
    if kind == "url" and isinstance(src.get("url"), str):
        return [{"type": "input_file", "file_url": src["url"]}]
    if kind == "text" and isinstance(src.get("data"), str):
        return [{"type": "input_text", "text": f"{title}\n\n{src['data']}" if title else src["data"]}]
    if kind == "content" and isinstance(src.get("content"), (str, list)):
        return _parts(src["content"], where + ".source", ("text", "image"))
    raise errors.bad_request(f"{where}.source must be a base64 PDF, a URL, text or content", "messages")


def _kind(block: Any) -> str | None:
    """A content block's `type`, or None when the block is not an object with a string type."""
    kind = block.get("type") if isinstance(block, dict) else None
    return kind if isinstance(kind, str) else None


def _search_result(block: dict[str, Any]) -> dict[str, Any]:
    content = raw if isinstance(raw := block.get("content"), list) else []
    texts = [c["text"] for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)]
    head = " — ".join(str(block[k]) for k in ("title", "source") if block.get(k))
    return {"type": "input_text", "text": "\n".join([head, *texts]) if head else "\n".join(texts)}


USER_BLOCKS = ("text", "image", "document", "search_result", "tool_reference")


def _block_parts(block: dict[str, Any], at: str) -> list[dict[str, Any]]:
    """One user-side content block (a type from USER_BLOCKS) as Responses input parts."""
    kind = block["type"]
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise errors.bad_request(f"{at}.text must be a string", "messages")
        return [{"type": "input_text", "text": block["text"]}]
    if kind == "image":
        return [_image(block, at)]
    if kind == "document":
        return _document(block, at)
    if kind == "search_result":
        return [_search_result(block)]
    return [{"type": "input_text", "text": f"(tool {block.get('tool_name', '?')} is available)"}]  # tool_reference


def _parts(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """User-side content (a string or blocks limited to `allowed`) as Responses input parts."""
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise errors.bad_request(f"{where}.content must be a string or an array of content blocks", "messages")
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = _kind(block)
        if kind not in allowed:
            raise errors.bad_request(f"{at}: content block type {kind!r} is not allowed here", "messages")
        parts += _block_parts(block, at)
    return parts


class _Input:
    """Builds the Codex `input` list: consecutive parts of one role share a message item."""

    def __init__(self, names: dict[str, str]) -> None:
        self.items: list[dict[str, Any]] = []
        self.names = names  # client tool name -> upstream name
        self.calls: dict[str, str] = {}  # upstream call id -> where its tool_use was
        self.answered: set[str] = set()
        self._role: str | None = None
        self._parts: list[dict[str, Any]] = []

    def part(self, role: str, part: dict[str, Any]) -> None:
        if role != self._role:
            self.flush()
            self._role = role
        self._parts.append(part)

    def item(self, item: dict[str, Any]) -> None:
        self.flush()
        self.items.append(item)

    def flush(self) -> None:
        if self._parts:
            self.items.append({"type": "message", "role": self._role, "content": self._parts})
        self._role, self._parts = None, []

    def user(self, content: Any, where: str) -> None:
        if content == "" or content == []:
            raise errors.bad_request(f"{where}: user messages must have non-empty content", "messages")
        if isinstance(content, str):
            self.part("user", {"type": "input_text", "text": content})
            return
        if not isinstance(content, list):
            raise errors.bad_request(f"{where}.content must be a string or an array of content blocks", "messages")
        for j, block in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = _kind(block)
            if kind == "tool_result":
                self.tool_result(block, at)
            elif kind in USER_BLOCKS:
                for part in _block_parts(block, at):
                    self.part("user", part)
            elif kind == "thinking" or kind in DROPPED_BLOCKS:
                continue
            elif kind == "tool_use":
                raise errors.bad_request(f"{at}: tool_use blocks belong in assistant messages", "messages")
            else:
                raise errors.bad_request(f"{at}: unsupported content block type {kind!r}", "messages")

    def tool_result(self, block: dict[str, Any], at: str) -> None:
        tool_id = block.get("tool_use_id")
        if not isinstance(tool_id, str) or not tool_id:
            raise errors.bad_request(f"{at}.tool_use_id is required", "messages")
        content = block.get("content", "")
        if content is None:
            content = ""
        parts = _parts(content, at, USER_BLOCKS)
        error = block.get("is_error") is True
        call_id = safe_id(tool_id)
        if call_id not in self.calls:  # the backend rejects an output for no known call: keep it as text
            text = "\n".join(p.get("text", "") for p in parts if p["type"] == "input_text")
            self.part("user", {"type": "input_text", "text": f"Tool result ({tool_id}){' [error]' if error else ''}:\n{text}"})
            return
        self.answered.add(call_id)
        output: Any
        if all(p["type"] == "input_text" for p in parts):
            output = "\n".join(p["text"] for p in parts)
            output = f"Error: {output}" if error else output
        else:
            output = ([{"type": "input_text", "text": "Error:"}] if error else []) + parts
        self.item({"type": "function_call_output", "call_id": call_id, "output": output})

    def assistant(self, content: Any, where: str) -> None:
        if isinstance(content, str):
            if content:
                self.part("assistant", {"type": "output_text", "text": content})
            return
        if not isinstance(content, list):
            raise errors.bad_request(f"{where}.content must be a string or an array of content blocks", "messages")
        for j, block in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = _kind(block)
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise errors.bad_request(f"{at}.text must be a string", "messages")
                if block["text"]:
                    self.part("assistant", {"type": "output_text", "text": block["text"]})
            elif kind == "thinking":
                signature = block.get("signature")
                if isinstance(signature, str) and signature.startswith(SIGNATURE_PREFIX):
                    self.item({"type": "reasoning", "summary": [], "encrypted_content": signature})
            elif kind == "tool_use":
                self.tool_use(block, at)
            elif kind in DROPPED_BLOCKS:
                continue
            elif kind == "tool_result":
                raise errors.bad_request(f"{at}: tool_result blocks belong in user messages", "messages")
            else:
                raise errors.bad_request(f"{at}: unsupported content block type {kind!r} in an assistant message", "messages")

    def tool_use(self, block: dict[str, Any], at: str) -> None:
        tool_id, name = block.get("id"), block.get("name")
        if not isinstance(tool_id, str) or not tool_id or not isinstance(name, str) or not name:
            raise errors.bad_request(f"{at}: tool_use blocks need an id and a name", "messages")
        args = block.get("input", {})
        call_id = safe_id(tool_id)
        self.calls[call_id] = at
        self.item(
            {
                "type": "function_call",
                "call_id": call_id,
                "name": self.names.get(name) or _short_history_name(name),
                "arguments": json.dumps(args if args is not None else {}, ensure_ascii=False),
            }
        )

    def system(self, content: Any, where: str) -> None:
        text = _system_text(content, where)
        if text:
            self.part("developer", {"type": "input_text", "text": text})


def _system_text(system: Any, where: str) -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise errors.bad_request(f"`{where}` must be a string or an array of text blocks", where)
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise errors.bad_request(f"{where}[{i}] must be a text block", where)
        if not block["text"].startswith(BILLING_PREFIX):
            texts.append(block["text"])
    return "\n\n".join(t for t in texts if t)


def _messages(body: dict[str, Any], names: dict[str, str], check_pairs: bool) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.bad_request("`messages` must be a non-empty array of {role, content} objects", "messages")
    builder = _Input(names)
    if body.get("system") is not None:
        builder.system(body["system"], "system")
        builder.flush()
    for n, msg in enumerate(messages):
        where = f"messages[{n}]"
        if not isinstance(msg, dict):
            raise errors.bad_request(f"{where} must be an object with role and content", "messages")
        role = msg.get("role")
        if "content" not in msg:
            raise errors.bad_request(f"{where}.content is required", "messages")
        if role == "user":
            builder.user(msg["content"], where)
        elif role == "assistant":
            builder.assistant(msg["content"], where)
        elif role == "system":  # Claude Code's mid-conversation system messages
            builder.system(msg["content"], where)
        else:
            raise errors.bad_request(f'{where}.role must be "user" or "assistant" (put instructions in the top-level `system`)', "messages")
    builder.flush()
    missing = [cid for cid in builder.calls if cid not in builder.answered]
    if check_pairs and missing:
        raise errors.bad_request(
            f"`tool_use` ids were found without `tool_result` blocks after them: {', '.join(missing)}. "
            "Each `tool_use` block must have a corresponding `tool_result` block in a later user message.",
            "messages",
        )
    if not any(i.get("role") in ("user", "assistant") or i["type"] != "message" for i in builder.items):
        raise errors.bad_request("`messages` has no user or assistant content", "messages")
    return builder.items


def _opening(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation's opening (instructions up to the first user message): it keys the prompt cache."""
    for n, item in enumerate(items[:8]):
        if item.get("role") == "user":
            return items[: n + 1]
    return items[:2]


def _text_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise errors.bad_request('`output_config.format` must be {"type": "json_schema", "schema": {...}}', "output_config.format")
    return {"type": "json_schema", "name": "output", "schema": fmt["schema"], "strict": False}


def request_to_codex(
    body: Any, settings: codex_body.Settings, *, session: str | None = None, counting: bool = False
) -> codex_body.CodexCall:
    """Translate a Messages request body into a Codex Responses body.

    `session` (Claude Code's session header) keys the prompt cache; `counting` relaxes the rules
    that only matter for a real call (`max_tokens`, answered tool uses), for count_tokens.
    """
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise errors.bad_request("`stream` must be a boolean", "stream")
    max_tokens = body.get("max_tokens")
    if not counting and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise errors.bad_request("`max_tokens` is required and must be a positive integer", "max_tokens")
    requested, thinking, summary_wanted = _effort(body)
    resolved = codex_body.resolve_model(settings, codex_model(body.get("model"), settings.catalog), requested)
    tools, short, web_names = _tools(body.get("tools"))
    names = {orig: s for s, orig in short.items()}
    summary = settings.reasoning_summary if summary_wanted else None
    out: dict[str, Any] = {
        "model": resolved.model,
        "instructions": "",
        "input": _messages(body, names, check_pairs=not counting),
        "reasoning": codex_body.reasoning_block(resolved.effort, summary),
    }
    if tools:
        declared = {t["name"] for t in body["tools"] if isinstance(t, dict) and t.get("type") in (None, "custom")}
        out["tools"] = tools
        out["tool_choice"], out["parallel_tool_calls"] = _tool_choice(body.get("tool_choice"), names, declared, web_names)
    if fmt := _text_format(body):
        out["text"] = {"format": fmt}
    if body.get("service_tier") in ("fast", "priority") or body.get("speed") == "fast":
        out["service_tier"] = "priority"
    out["prompt_cache_key"] = codex_body.derived_cache_key("messages", session or _session_of(body.get("metadata")), _opening(out["input"]))
    lite = settings.catalog.lite(resolved.model)
    codex = codex_body.finalize(out, lite)
    # `client_model` is echoed as the answer's `model` (Claude Code drops thinking of other models);
    # `input_tokens` is the local estimate `message_start` reports; `tool_names` maps short upstream names back.
    # `limits`: `stop_sequences` and `max_tokens`, honoured locally (the backend takes neither).
    options: dict[str, Any] = {
        "tool_names": short,
        "thinking": thinking,
        "input_tokens": estimate_tokens(codex),
        "client_model": body["model"],
    }
    if not counting:
        options["limits"] = {
            "stop": limits.stop_list(body.get("stop_sequences"), "stop_sequences", most=None, single=False),
            "max_tokens": max_tokens,
            "input_tokens": options["input_tokens"],
        }
    return codex_body.CodexCall(
        codex, stream, resolved.model, resolved.effort, options, clamped_from=resolved.clamped_from, headers=codex_body.lite_headers(lite)
    )


# ---------------------------------------------------------------------------------------------
# Token estimate

_PUNCT = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)
_SPACE = str.maketrans("", "", string.whitespace)
IMAGE_TOKENS = 800
PDF_PAGE_TOKENS = 1500
ITEM_TOKENS = 4
TOOL_TOKENS = 8


def text_tokens(text: str) -> float:
    """Estimated o200k tokens of a string (rates in the module docstring)."""
    n = len(text)
    if not n:
        return 0.0
    ascii_n = n if text.isascii() else len(text.encode("ascii", "ignore"))
    punct = n - len(text.translate(_PUNCT))
    digits = n - len(text.translate(_DIGITS))
    space = n - len(text.translate(_SPACE))
    letters = max(0, ascii_n - punct - digits - space)
    cost = 0.21 * letters + 0.86 * digits + 0.40 * punct + 0.21 * space
    other = n - ascii_n
    if other:
        extra_bytes = len(text.encode("utf-8", "surrogatepass")) - n
        cost += other * min(1.0, max(0.2, 0.2 + 0.6 * (extra_bytes / other - 1)))
    return cost


def _file_tokens(part: dict[str, Any]) -> float:
    data = part.get("file_data")
    if not isinstance(data, str) or "base64," not in data:
        return PDF_PAGE_TOKENS
    try:
        raw = base64.b64decode(data.split("base64,", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        return PDF_PAGE_TOKENS
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", raw))
    return PDF_PAGE_TOKENS * max(1, pages)


def _content_tokens(content: Any) -> float:
    if isinstance(content, str):
        return text_tokens(content)
    total = 0.0
    for part in content if isinstance(content, list) else []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            total += text_tokens(part.get("text", ""))
        elif kind == "input_image":
            total += IMAGE_TOKENS
        elif kind == "input_file":
            total += _file_tokens(part)
    return total


def estimate_tokens(codex: dict[str, Any]) -> int:
    """Estimated input tokens of a Codex request body: instructions, input items and tools."""
    total = 3 + text_tokens(codex.get("instructions") or "")
    for item in codex.get("input") or []:
        total += ITEM_TOKENS
        kind = item.get("type")
        if kind == "message":
            total += _content_tokens(item.get("content"))
        elif kind == "function_call":
            total += text_tokens(item.get("name", "")) + text_tokens(item.get("arguments", ""))
        elif kind == "function_call_output":
            total += _content_tokens(item.get("output"))
        elif kind == "reasoning":
            total += len(item.get("encrypted_content") or "") / 40  # the hidden reasoning, roughly
        elif kind == "additional_tools":
            total -= ITEM_TOKENS  # its tools are counted below, as in the classic form
    for tool in codex_body.declared_tools(codex):
        total += TOOL_TOKENS + text_tokens(tool.get("name", "")) + text_tokens(tool.get("description", ""))
        if isinstance(tool.get("parameters"), dict):
            total += text_tokens(json.dumps(tool["parameters"], ensure_ascii=False, separators=(",", ":")))
    if isinstance((codex.get("text") or {}).get("format"), dict):
        total += text_tokens(json.dumps(codex["text"]["format"], ensure_ascii=False, separators=(",", ":")))
    return max(1, math.ceil(total))


def count_tokens(body: Any, settings: codex_body.Settings) -> int:
    """`POST /v1/messages/count_tokens`: a local estimate (method in the module docstring)."""
    return request_to_codex(body, settings, counting=True).options["input_tokens"]
