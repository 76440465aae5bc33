"""The Amp module's settings (pure; no mitmproxy import): the config block, model mapping, secrets.

- `parse`: the `ampcode:` config block → `AmpSettings` (errors name the key).
- `ModelMapper` / `decide`: exact and regex model mappings, thinking suffixes, default vs force mode
  (exact names first, case-insensitive, then regexes in order).
- `SecretSource`: the Amp key for the upstream — config, then `AMP_API_KEY`, then Amp's own
  `~/.local/share/amp/secrets.json` (the Amp CLI's own store) — plus the per-client key mapping.

Request fix-ups and response rewriting live in `amp_wire`.

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cliproxy.addons.core.validate import ConfigError, expect

logger = logging.getLogger(__name__)

SECRETS_FILE = Path(".local/share/amp/secrets.json")  # under $HOME
SECRETS_FILE_KEY = "apiKey@https://ampcode.com/"  # the Amp CLI stores its key under this name, whatever upstream-url says
SECRETS_FILE_TTL = 300.0  # seconds, empty results included; a changed file is re-read at once
_KNOWN = {
    "upstream-url",
    "upstream-api-key",
    "upstream-api-keys",
    "restrict-management-to-localhost",
    "model-mappings",
    "force-model-mappings",
}


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
    """Where a provider call goes: served locally (as is, or mapped) or forwarded to the Amp upstream."""
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


def _secret(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")  # no value: it may be a secret
    return value.strip()


def _upstream_url(value: Any) -> str:
    url = expect(value if value is not None else "", str, "ampcode.upstream-url", "a URL string").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"ampcode.upstream-url: expected an http:// or https:// URL such as https://ampcode.com, got {url!r}")
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise ConfigError(f"ampcode.upstream-url: invalid port in {url!r}") from None
    return url.rstrip("/")


def _client_keys(value: Any, warnings: list[str]) -> dict[str, str]:
    key = "ampcode.upstream-api-keys"
    expect(value, list, key, "a list of entries with upstream-api-key and api-keys")
    out: dict[str, str] = {}
    for i, entry in enumerate(value):
        at = f"{key}[{i}]"
        expect(entry, dict, at, "a mapping with upstream-api-key and api-keys")
        unknown = set(entry) - {"upstream-api-key", "api-keys"}
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected upstream-api-key and api-keys")
        amp_key = _secret(entry.get("upstream-api-key", ""), f"{at}.upstream-api-key")
        clients = entry.get("api-keys") or []
        expect(clients, list, f"{at}.api-keys", "a list of proxy client keys")
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
    expect(value, list, key, "a list of {from, to, regex} entries")
    out = []
    for i, entry in enumerate(value):
        at = f"{key}[{i}]"
        expect(entry, dict, at, "a mapping with from, to and optional regex")
        unknown = set(entry) - {"from", "to", "regex"}
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected from, to and optional regex")
        source = expect(entry.get("from", ""), str, f"{at}.from", "a model name (or a pattern with regex: true)").strip()
        target = expect(entry.get("to", ""), str, f"{at}.to", "a model id").strip()
        regex = expect(entry.get("regex", False), bool, f"{at}.regex", "true or false")
        if not source or not target:
            warnings.append(f"{at}: empty {'from' if not source else 'to'}, entry ignored")
            continue
        if regex:
            try:
                re.compile(source, re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(f"{at}.from: invalid regular expression {source!r}: {exc}") from None
        out.append(ModelMapping(source, target, regex))
    return tuple(out)


def parse(block: Any) -> AmpSettings:
    """Validate the `ampcode:` block; raises config.ConfigError naming the offending key."""
    if block is None:
        block = {}
    expect(block, dict, "ampcode", "a mapping")
    warnings = [f"ampcode.{k}: unknown key ignored" for k in block if k not in _KNOWN]
    mappings = _mappings(block.get("model-mappings") or [], warnings)
    settings = AmpSettings(
        upstream_url=_upstream_url(block.get("upstream-url")),
        client_keys=_client_keys(block.get("upstream-api-keys") or [], warnings),
        restrict_management_to_localhost=expect(
            block.get("restrict-management-to-localhost", False), bool, "ampcode.restrict-management-to-localhost", "true or false"
        ),
        mappings=mappings,
        force_model_mappings=expect(block.get("force-model-mappings", False), bool, "ampcode.force-model-mappings", "true or false"),
        mapper=ModelMapper.build(mappings),
        secrets=SecretSource(_secret(block.get("upstream-api-key") or "", "ampcode.upstream-api-key")),
        warnings=tuple(warnings),
    )
    for warning in warnings:
        logger.warning("cliproxy config: %s", warning)
    return settings
