"""What Amp's provider calls need on the wire (pure; no mitmproxy import).

- `provider_kind`: which API an `/api/provider/<p>/…` request speaks (Amp names the provider, then the provider's own path).
- Request fix-ups for the Amp upstream and for local serving (`sanitize_body`, `strip_beta`,
  `scrub_query`, `upstream_headers`, `join_url`, `forwarded_query`, `repair_hidden_gzip`).
- The response rewriter for locally served calls (`ResponseRewriter`, `SSERewriter`).

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

logger = logging.getLogger(__name__)

CONTEXT_1M_BETA = "context-1m-2025-08-07"  # stripped: the Codex backend has no such context mode


# ---------------------------------------------------------------------------------------------
# Provider paths: /api/provider/<openai|anthropic|google>/<the provider's own API path>

Kind = Literal[
    "models", "chat", "completions", "responses", "messages", "count_tokens", "gemini", "gemini_models", "passthrough", "unknown"
]
#: Kinds cliproxy can serve itself; the rest go to the Amp upstream.
LOCAL_KINDS: dict[str, tuple[str, Literal["openai", "anthropic"], str]] = {
    "chat": ("chat", "openai", "/v1/chat/completions"),
    "responses": ("responses", "openai", "/v1/responses"),
    "messages": ("messages", "anthropic", "/v1/messages"),
    "count_tokens": ("count_tokens", "anthropic", "/v1/messages/count_tokens"),
}
_POST_KINDS = {
    "/chat/completions": "chat",
    "/v1/chat/completions": "chat",
    "/completions": "completions",
    "/v1/completions": "completions",
    "/responses": "responses",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
}


def provider_kind(path: str, method: str) -> tuple[str, Kind, str | None]:
    """(provider, kind, Gemini model) of an `/api/provider/<p>/…` request."""
    path = path.split("?", 1)[0].rstrip("/")
    provider, _, rest = path[len("/api/provider/") :].partition("/")
    rest = "/" + rest if rest else ""
    if rest in ("/models", "/v1/models") and method in ("GET", "HEAD"):
        return provider, "models", None
    if provider == "google" and rest.startswith("/v1beta1/"):
        if method == "POST" and "/models/" in rest:
            return provider, "gemini", rest.split("/models/", 1)[1].split(":", 1)[0] or None
        return provider, "passthrough", None  # Vertex-style reads go to the upstream as they are
    if rest == "/v1beta/models" and method in ("GET", "HEAD"):
        return provider, "gemini_models", None
    if rest.startswith("/v1beta/models/"):
        action = rest[len("/v1beta/models/") :]
        if method == "POST":
            return provider, "gemini", action.split(":", 1)[0] or None
        if method in ("GET", "HEAD"):
            return provider, "gemini_models", None
    if method == "POST" and rest in _POST_KINDS:
        return provider, _POST_KINDS[rest], None  # type: ignore[return-value]
    return provider, "unknown", None


# ---------------------------------------------------------------------------------------------
# Request fix-ups


def sanitize_body(body: Any) -> bool:
    """Drop unsigned thinking blocks and `tool_use.signature` from assistant turns, in place (the backend refuses thinking it did not sign).

    The rewriter injects empty signatures for Amp's TUI, and Amp sends them back; Claude rejects both.
    Returns whether anything changed.
    """
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return False
    changed = False
    for message in body["messages"]:
        if not isinstance(message, dict) or message.get("role") != "assistant" or not isinstance(message.get("content"), list):
            continue
        kept = []
        for block in message["content"]:
            if isinstance(block, dict) and block.get("type") == "thinking":
                signature = block.get("signature")
                if not isinstance(signature, str) or not signature.strip():
                    changed = True
                    continue
            elif isinstance(block, dict) and block.get("type") == "tool_use" and "signature" in block:
                block = {k: v for k, v in block.items() if k != "signature"}
                changed = True
            kept.append(block)
        message["content"] = kept
    return changed


def strip_beta(value: str) -> str:
    """The `anthropic-beta` list without the 1M-context flag (the Codex backend does not have it)."""
    return ",".join(item.strip() for item in value.split(",") if item.strip() and item.strip() != CONTEXT_1M_BETA)


def scrub_query(query: list[tuple[str, str]], client_keys: Iterable[str]) -> list[tuple[str, str]]:
    """Drop `key=` / `auth_token=` parameters that carry a proxy client key; keep everything else."""
    secrets = [k.encode() for k in client_keys if k]
    return [(k, v) for k, v in query if k not in ("key", "auth_token") or not any(hmac.compare_digest(v.encode(), s) for s in secrets)]


#: Headers never sent to the Amp upstream: client credentials, proxy tracing, client identity and
#: browser fingerprints, and hop-by-hop proxy auth.
DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
        "forwarded",
        "via",
        "x-title",
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "http-referer",
        "referer",
        "sec-ch-ua",
        "sec-ch-ua-mobile",
        "sec-ch-ua-platform",
        "sec-fetch-mode",
        "sec-fetch-site",
        "sec-fetch-dest",
        "priority",
        "accept-encoding",
    }
)


def upstream_headers(client: Iterable[tuple[str, str]], amp_key: str) -> list[tuple[str, str]]:
    """The client's headers as the Amp upstream gets them: scrubbed, uncompressed, with the Amp key."""
    fields = [(k, v) for k, v in client if k.lower() not in DROPPED_HEADERS]
    fields.append(("accept-encoding", "identity"))  # the proxy reads (and may repair) bodies
    if amp_key:
        fields += [("x-api-key", amp_key), ("authorization", f"Bearer {amp_key}")]
    return fields


def join_url(upstream: str, path: str, query: str) -> str:
    """Upstream base URL + the request path and (raw) query, the upstream's own query in front."""
    base = urlsplit(upstream)
    query = "&".join(q for q in (base.query, query) if q)
    url = f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}{path}"
    return f"{url}?{query}" if query else url


def forwarded_query(raw: str, client_keys: Iterable[str]) -> str:
    """The request's query for the upstream: unchanged (byte for byte) unless a client key had to go."""
    pairs = parse_qsl(raw, keep_blank_values=True)
    kept = scrub_query(pairs, client_keys)
    return raw if kept == pairs else urlencode(kept)


def repair_hidden_gzip(body: bytes) -> bytes | None:
    """The gunzipped body when an upstream sent gzip without saying so; None when there is nothing to fix."""
    if body[:2] != b"\x1f\x8b":
        return None
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):
        return None  # truncated or not gzip after all: pass the bytes on unchanged


# ---------------------------------------------------------------------------------------------
# Response rewriting for locally served calls

#: Amp's mode whitelists are case-sensitive; `glob` stays lower-case.
TOOL_CASING = {"bash": "Bash", "read": "Read", "grep": "Grep", "task": "Task", "check": "Check", "glob": "glob"}
_MODEL_HINTS = (b'"model', b'"tool_use"', b'"thinking"')


def tool_casing(request: Any) -> dict[str, str | None]:
    """Lower-case name → the casing the request's tools use (None: the request uses two casings)."""
    names: list[str] = []
    if isinstance(request, dict):
        for tool in request.get("tools") or []:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                names.append(tool["name"])
        choice = request.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
            names.append(choice["name"])
    seen: dict[str, set[str]] = {}
    for name in names:
        seen.setdefault(name.lower(), set()).add(name)
    return {low: next(iter(casings)) if len(casings) == 1 else None for low, casings in seen.items()}


@dataclass(slots=True)
class ResponseRewriter:
    """Makes locally served answers acceptable to Amp: signatures, tool-name casing, the client's model name."""

    client_model: str | None
    casing: dict[str, str | None] = field(default_factory=dict)
    suppress_thinking: bool = True  # only ever applied to whole (non-stream) answers

    def _name(self, name: str) -> str:
        low = name.lower()
        if low in self.casing:
            return self.casing[low] or name  # None: the request itself is ambiguous, leave it alone
        return TOOL_CASING.get(low, name)

    def _block(self, block: Any) -> None:
        if not isinstance(block, dict) or block.get("type") not in ("tool_use", "thinking"):
            return
        block.setdefault("signature", "")  # Amp's TUI reads signature.length
        if block["type"] == "tool_use" and isinstance(block.get("name"), str):
            block["name"] = self._name(block["name"])

    def _common(self, obj: dict[str, Any]) -> None:
        content = obj.get("content")
        if isinstance(content, list):
            for block in content:
                self._block(block)
        self._block(obj.get("content_block"))
        message = obj.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("content"), list):
                for block in message["content"]:
                    self._block(block)
            if "model" in message and self.client_model:
                message["model"] = self.client_model
        if self.client_model:
            for key in ("model", "modelVersion"):
                if key in obj:
                    obj[key] = self.client_model
            response = obj.get("response")
            if isinstance(response, dict):
                for key in ("model", "modelVersion"):
                    if key in response:
                        response[key] = self.client_model

    def rewrite_json(self, obj: Any) -> Any:
        """A whole answer: steps 1–4 (thinking dropped beside tool_use when enabled)."""
        if not isinstance(obj, dict):
            return obj
        self._common(obj)
        content = obj.get("content")
        if (
            self.suppress_thinking
            and isinstance(content, list)
            and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
        ):
            obj["content"] = [b for b in content if not (isinstance(b, dict) and b.get("type") == "thinking")]
        return obj

    def rewrite_body(self, body: bytes) -> bytes | None:
        """A whole JSON body rewritten, or None when it is not JSON."""
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        return json.dumps(self.rewrite_json(obj), ensure_ascii=False).encode()

    def rewrite_event(self, event: bytes) -> bytes:
        """One complete SSE event (with its terminating blank line): steps 1, 2 and 4, never thinking suppression."""
        if not any(hint in event for hint in _MODEL_HINTS):
            return event  # most events (deltas) carry nothing to fix: no JSON parsing
        body = event.rstrip(b"\r\n")
        tail = event[len(body) :]
        lines = body.split(b"\n")
        data_at = [i for i, line in enumerate(lines) if line.startswith(b"data:")]
        if not data_at:
            return event
        payload = b"\n".join(lines[i][5:].strip(b"\r").removeprefix(b" ") for i in data_at)
        try:
            obj = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return event
        if not isinstance(obj, dict):
            return event
        self._common(obj)
        line = b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        kept = [ln for i, ln in enumerate(lines) if i not in data_at[1:]]
        kept[data_at[0]] = line
        return b"\n".join(kept) + tail


_EVENT_END = re.compile(rb"\r?\n\r?\n")


class SSERewriter:
    """Wraps a stream callable: its output is re-cut into complete SSE events and each is rewritten.

    Keeps what the wrapped callable exposes to the rest of cliproxy (`translator`,
    `ends_on_upstream_error`). Never raises (an exception in a stream callable drops the chunk) and never returns `b""` (mitmproxy turns it into the end of the body).
    """

    def __init__(self, inner: Callable[[bytes], bytes | Iterable[bytes]] | None, rewriter: ResponseRewriter) -> None:
        self.inner = inner
        self.rewriter = rewriter
        self.translator = getattr(inner, "translator", inner)
        self.ends_on_upstream_error = getattr(inner, "ends_on_upstream_error", False)
        self._buf = bytearray()
        self._scan = 0  # where the search for the next event end resumes: each byte is scanned once

    def __call__(self, data: bytes) -> list[bytes]:
        try:
            out = self.inner(data) if self.inner is not None else data
            for chunk in [out] if isinstance(out, bytes) else out:
                self._buf += chunk
            return self.feed(final=not data)
        except Exception:  # pass the rest through unchanged rather than drop it
            logger.exception("amp: response rewrite failed; passing the stream through")
            rest, self._buf = bytes(self._buf), bytearray()
            return [rest] if rest else []

    def feed(self, final: bool = False) -> list[bytes]:
        out: list[bytes] = []
        pos = 0
        while m := _EVENT_END.search(self._buf, max(pos, self._scan)):
            out.append(self.rewriter.rewrite_event(bytes(self._buf[pos : m.end()])))
            pos = m.end()
        del self._buf[:pos]
        self._scan = max(0, len(self._buf) - 3)
        if final and self._buf:
            out.append(self.rewriter.rewrite_event(bytes(self._buf)))
            self._buf.clear()
            self._scan = 0
        return out


def rewrite_sse(body: bytes, rewriter: ResponseRewriter) -> bytes:
    """A whole buffered event stream, rewritten."""
    rewrite = SSERewriter(None, rewriter)
    return b"".join(rewrite(body) + rewrite(b""))
