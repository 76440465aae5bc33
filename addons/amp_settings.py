"""The Amp module's pure logic (no mitmproxy import): settings, model mapping, secrets, fix-ups.

- `parse`: the `ampcode:` config block → `AmpSettings` (errors name the key, amp.md §2).
- `ModelMapper` / `decide`: exact and regex model mappings, thinking suffixes, default vs force mode
  (amp.md §5, §6).
- `SecretSource`: the Amp key for the upstream — config, then `AMP_API_KEY`, then Amp's own
  `~/.local/share/amp/secrets.json` (amp.md §9) — plus the per-client key mapping.
- Request fix-ups (`sanitize_body`, `strip_beta`, `scrub_query`, `upstream_headers`) and the response
  rewriter for locally served calls (`ResponseRewriter`, `SSERewriter`, amp.md §5.3).

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

logger = logging.getLogger(__name__)

SECRETS_FILE = Path(".local/share/amp/secrets.json")  # under $HOME
SECRETS_FILE_KEY = "apiKey@https://ampcode.com/"  # fixed, whatever upstream-url says (amp.md §9)
SECRETS_FILE_TTL = 300.0  # seconds, empty results included; a changed file is re-read at once
CONTEXT_1M_BETA = "context-1m-2025-08-07"
_KNOWN = {"upstream-url", "upstream-api-key", "upstream-api-keys", "restrict-management-to-localhost",
          "model-mappings", "force-model-mappings"}


def _error(message: str) -> Exception:
    from .config import ConfigError  # config imports this module at load time

    return ConfigError(message)


# ---------------------------------------------------------------------------------------------
# Model names and mappings


def split_suffix(model: str) -> tuple[str, str | None]:
    """`gpt-5.2(xhigh)` → (`gpt-5.2`, `xhigh`). An empty `()` counts as no suffix; `x(high` is a plain name."""
    model = model.strip()
    if model.endswith(")") and (i := model.rfind("(")) > 0:
        return model[:i].strip(), model[i + 1 : -1].strip() or None
    return model, None


def with_suffix(base: str, suffix: str | None) -> str:
    return f"{base}({suffix})" if suffix else base


@dataclass(frozen=True, slots=True)
class ModelMapping:
    """One `model-mappings` entry."""

    source: str  # `from`: a model name (case-insensitive) or, with regex, a pattern
    target: str  # `to`: a model id, optionally with its own thinking suffix
    regex: bool = False


@dataclass(frozen=True, slots=True)
class ModelMapper:
    """Exact rules (last duplicate wins) always beat regex rules (file order; unanchored search)."""

    exact: Mapping[str, str] = field(default_factory=dict)  # lower-case `from` -> `to`
    patterns: tuple[tuple[re.Pattern[str], str], ...] = ()

    @classmethod
    def build(cls, mappings: Iterable[ModelMapping]) -> ModelMapper:
        exact: dict[str, str] = {}
        patterns = []
        for m in mappings:
            if m.regex:
                patterns.append((re.compile(m.source, re.IGNORECASE), m.target))
            else:
                exact[m.source.lower()] = m.target
        return cls(exact, tuple(patterns))

    def __len__(self) -> int:
        return len(self.exact) + len(self.patterns)

    def lookup(self, requested: str) -> str | None:
        """The raw `to` of the rule that matches the requested model's base name, if any."""
        base, _ = split_suffix(requested)
        if (target := self.exact.get(base.lower())) is not None:
            return target
        return next((target for pattern, target in self.patterns if pattern.search(base)), None)

    def map(self, requested: str, served: Callable[[str], bool]) -> str | None:
        """The model to use instead of `requested`, or None.

        The first matching rule decides (no fall-through): its target counts only when its base name
        is served locally. The target's own suffix wins, else the request's suffix is carried over.
        """
        target = self.lookup(requested)
        if target is None:
            return None
        target_base, target_suffix = split_suffix(target)
        if not served(target_base):
            logger.debug("amp: mapping %s -> %s ignored: the target is not served locally", requested, target)
            return None
        return with_suffix(target_base, target_suffix or split_suffix(requested)[1])


Route = Literal["local", "mapped", "upstream"]


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    model: str  # the model to serve (mapped, suffix kept) or the requested one


def decide(requested: str, mapper: ModelMapper, served: Callable[[str], bool], force: bool) -> Decision:
    """Where a provider call goes (amp.md §5 step 5)."""
    base, _ = split_suffix(requested)
    if force and (mapped := mapper.map(requested, served)):
        return Decision("mapped", mapped)
    if served(base):
        return Decision("local", requested)
    if not force and (mapped := mapper.map(requested, served)):
        return Decision("mapped", mapped)
    return Decision("upstream", requested)


# ---------------------------------------------------------------------------------------------
# Secrets


class SecretSource:
    """The Amp key: config, else `AMP_API_KEY` (read on every call), else Amp's secrets.json (cached)."""

    def __init__(self, configured: str = "", ttl: float = SECRETS_FILE_TTL, home: Callable[[], Path] = Path.home) -> None:
        self._configured = configured.strip()
        self._ttl = ttl
        self._home = home
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple | None, str] | None = None  # (read at, file signature, key)

    def __repr__(self) -> str:
        return f"SecretSource(configured={bool(self._configured)})"

    def key(self) -> str:
        if self._configured:
            return self._configured
        if env := os.environ.get("AMP_API_KEY", "").strip():
            return env
        return self._file_key()

    def source(self) -> str:
        """Where the key comes from (for logs; never the key itself)."""
        if self._configured:
            return "ampcode.upstream-api-key"
        if os.environ.get("AMP_API_KEY", "").strip():
            return "AMP_API_KEY"
        return str(self._home() / SECRETS_FILE) if self._file_key() else "none"

    def _file_key(self) -> str:
        path = self._home() / SECRETS_FILE
        try:
            st = path.stat()
            sig: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        now = time.monotonic()
        with self._lock:
            if self._cached and now - self._cached[0] < self._ttl and self._cached[1] == sig:
                return self._cached[2]
            key = self._read(path) if sig else ""
            self._cached = (now, sig, key)
            return key

    @staticmethod
    def _read(path: Path) -> str:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("amp: cannot read the Amp key from %s (%s); the upstream gets no key", path, type(exc).__name__)
            return ""
        value = data.get(SECRETS_FILE_KEY) if isinstance(data, dict) else None
        return value.strip() if isinstance(value, str) else ""


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class AmpSettings:
    """The parsed `ampcode:` block. The default is disabled: no upstream, no mappings."""

    upstream_url: str = ""
    client_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # proxy client key -> Amp key
    restrict_management_to_localhost: bool = False
    mappings: tuple[ModelMapping, ...] = ()
    force_model_mappings: bool = False
    mapper: ModelMapper = field(default_factory=ModelMapper, compare=False, repr=False)
    secrets: SecretSource = field(default_factory=SecretSource, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def enabled(self) -> bool:
        """Whether an Amp upstream is configured (management routes and fallback work)."""
        return bool(self.upstream_url)

    def amp_key(self, client_key: str | None) -> str:
        """The Amp key for a request authenticated with `client_key` (per-client mapping first)."""
        if client_key:
            for known, amp_key in self.client_keys.items():
                if hmac.compare_digest(known.encode(), client_key.encode()):
                    return amp_key
        return self.secrets.key()


def _expect(value: Any, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _error(f"{key}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def _secret(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _error(f"{key}: expected a string, got {type(value).__name__}")  # no value: it may be a secret
    return value.strip()


def _upstream_url(value: Any) -> str:
    url = _expect(value if value is not None else "", str, "ampcode.upstream-url", "a URL string").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(f"ampcode.upstream-url: expected an http:// or https:// URL such as https://ampcode.com, got {url!r}")
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise _error(f"ampcode.upstream-url: invalid port in {url!r}") from None
    return url.rstrip("/")


def _client_keys(value: Any, warnings: list[str]) -> dict[str, str]:
    key = "ampcode.upstream-api-keys"
    _expect(value, list, key, "a list of entries with upstream-api-key and api-keys")
    out: dict[str, str] = {}
    for i, entry in enumerate(value):
        at = f"{key}[{i}]"
        _expect(entry, dict, at, "a mapping with upstream-api-key and api-keys")
        unknown = set(entry) - {"upstream-api-key", "api-keys"}
        if unknown:
            raise _error(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected upstream-api-key and api-keys")
        amp_key = _secret(entry.get("upstream-api-key", ""), f"{at}.upstream-api-key")
        clients = entry.get("api-keys") or []
        _expect(clients, list, f"{at}.api-keys", "a list of proxy client keys")
        if not amp_key:
            warnings.append(f"{at}: blank upstream-api-key, entry ignored")
            continue
        for j, client in enumerate(clients):
            client = _secret(client, f"{at}.api-keys[{j}]")
            if not client:
                continue
            if client in out:
                warnings.append(f"{at}.api-keys[{j}]: client key already mapped by an earlier entry; using the first mapping")
                continue
            out[client] = amp_key
    return out


def _mappings(value: Any, warnings: list[str]) -> tuple[ModelMapping, ...]:
    key = "ampcode.model-mappings"
    _expect(value, list, key, "a list of {from, to, regex} entries")
    out = []
    for i, entry in enumerate(value):
        at = f"{key}[{i}]"
        _expect(entry, dict, at, "a mapping with from, to and optional regex")
        unknown = set(entry) - {"from", "to", "regex"}
        if unknown:
            raise _error(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected from, to and optional regex")
        source = _expect(entry.get("from", ""), str, f"{at}.from", "a model name (or a pattern with regex: true)").strip()
        target = _expect(entry.get("to", ""), str, f"{at}.to", "a model id").strip()
        regex = _expect(entry.get("regex", False), bool, f"{at}.regex", "true or false")
        if not source or not target:
            warnings.append(f"{at}: empty {'from' if not source else 'to'}, entry ignored")
            continue
        if regex:
            try:
                re.compile(source, re.IGNORECASE)
            except re.error as exc:
                raise _error(f"{at}.from: invalid regular expression {source!r}: {exc}") from None
        out.append(ModelMapping(source, target, regex))
    return tuple(out)


def parse(block: Any) -> AmpSettings:
    """Validate the `ampcode:` block; raises config.ConfigError naming the offending key."""
    if block is None:
        block = {}
    _expect(block, dict, "ampcode", "a mapping")
    warnings = [f"ampcode.{k}: unknown key ignored" for k in block if k not in _KNOWN]
    mappings = _mappings(block.get("model-mappings") or [], warnings)
    settings = AmpSettings(
        upstream_url=_upstream_url(block.get("upstream-url")),
        client_keys=_client_keys(block.get("upstream-api-keys") or [], warnings),
        restrict_management_to_localhost=_expect(block.get("restrict-management-to-localhost", False), bool,
                                                 "ampcode.restrict-management-to-localhost", "true or false"),
        mappings=mappings,
        force_model_mappings=_expect(block.get("force-model-mappings", False), bool, "ampcode.force-model-mappings", "true or false"),
        mapper=ModelMapper.build(mappings),
        secrets=SecretSource(_secret(block.get("upstream-api-key") or "", "ampcode.upstream-api-key")),
        warnings=tuple(warnings),
    )
    for warning in warnings:
        logger.warning("cliproxy config: %s", warning)
    return settings


# ---------------------------------------------------------------------------------------------
# Provider paths (amp.md §4.2)

Kind = Literal["models", "chat", "completions", "responses", "messages", "count_tokens", "gemini", "gemini_models", "passthrough", "unknown"]
#: Kinds cliproxy can serve itself; the rest go to the Amp upstream.
LOCAL_KINDS = {"chat": ("chat", "openai", "/v1/chat/completions"), "responses": ("responses", "openai", "/v1/responses"),
               "messages": ("messages", "anthropic", "/v1/messages"), "count_tokens": ("count_tokens", "anthropic", "/v1/messages/count_tokens")}
_POST_KINDS = {"/chat/completions": "chat", "/v1/chat/completions": "chat", "/completions": "completions",
               "/v1/completions": "completions", "/responses": "responses", "/v1/responses": "responses",
               "/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens"}


def provider_kind(path: str, method: str) -> tuple[str, Kind, str | None]:
    """(provider, kind, Gemini model) of an `/api/provider/<p>/…` request."""
    path = path.split("?", 1)[0].rstrip("/")
    provider, _, rest = path[len("/api/provider/"):].partition("/")
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
        action = rest[len("/v1beta/models/"):]
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
    """Drop unsigned thinking blocks and `tool_use.signature` from assistant turns, in place (amp.md §5 step 2).

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
    return [(k, v) for k, v in query
            if k not in ("key", "auth_token") or not any(hmac.compare_digest(v.encode(), s) for s in secrets)]


#: Headers never sent to the Amp upstream: client credentials, proxy tracing, client identity and
#: browser fingerprints (amp.md §8), and hop-by-hop proxy auth.
DROPPED_HEADERS = frozenset({
    "authorization", "x-api-key", "x-goog-api-key", "proxy-authorization",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "forwarded", "via",
    "x-title", "x-stainless-lang", "x-stainless-package-version", "x-stainless-os", "x-stainless-arch",
    "x-stainless-runtime", "x-stainless-runtime-version", "http-referer", "referer",
    "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest", "priority",
    "accept-encoding",
})


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
# Response rewriting for locally served calls (amp.md §5.3)

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
        if self.suppress_thinking and isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
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
        tail = event[len(body):]
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
    `ends_on_upstream_error`). Never raises and never returns `b""` (mitmproxy.md §0.4–0.5).
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
