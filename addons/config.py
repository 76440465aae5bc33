"""The cliproxy YAML config: parsing and validation (pure; no mitmproxy import).

Key names follow CLIProxyAPI's where the concept is the same. Every error names the key and says
what was expected, so a user can fix the file from the log line alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import amp_settings
from .translate.codex_body import Settings
from .translate.models import EFFORT_ORDER, Catalog, ModelInfo

DEFAULT_CODEX_BASE_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_OAUTH_ISSUER = "https://auth.openai.com"
DEFAULT_AUTH_DIR = "~/.cli-proxy-api"
STRATEGIES = ("round-robin", "fill-first")
CHAT_REASONING = ("reasoning_content", "think-tags", "hidden")
SUMMARIES = ("auto", "concise", "detailed", "none")
KNOWN_KEYS = {
    "auth-dir", "api-keys", "codex-base-url", "oauth-issuer", "routing", "codex-api-key", "model-aliases",
    "models", "reasoning", "ampcode", "request-timeout-seconds", "codex-cli-pooling", "max-request-bytes",
}


class ConfigError(ValueError):
    """The config file is unusable; the message names the key and what is expected."""


@dataclass(frozen=True, slots=True)
class ApiKeyUpstream:
    """A `codex-api-key` entry: a plain OpenAI API key used like an account."""

    api_key: str = field(repr=False)
    base_url: str = "https://api.openai.com/v1"
    models: tuple[tuple[str, str], ...] = ()  # (upstream name, client alias)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    auth_dir: Path = Path(DEFAULT_AUTH_DIR).expanduser()
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    codex_base_url: str = DEFAULT_CODEX_BASE_URL
    oauth_issuer: str = DEFAULT_OAUTH_ISSUER
    strategy: str = "round-robin"
    api_key_upstreams: tuple[ApiKeyUpstream, ...] = ()
    settings: Settings = field(default_factory=Settings)
    ampcode: amp_settings.AmpSettings = field(default_factory=amp_settings.AmpSettings)
    request_timeout: int = 600
    codex_cli_pooling: bool = False
    max_request_bytes: int = 64 * 1024 * 1024
    warnings: tuple[str, ...] = ()

    @property
    def responses_url(self) -> str:
        return self.codex_base_url.rstrip("/") + "/responses"


def _expect(value: Any, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def _url(value: Any, key: str) -> str:
    _expect(value, str, key, "a URL string")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    _expect(value, list, key, "a list of strings")
    for i, item in enumerate(value):
        _expect(item, str, f"{key}[{i}]", "a string")
    return tuple(value)


def _api_key_upstreams(value: Any) -> tuple[ApiKeyUpstream, ...]:
    _expect(value, list, "codex-api-key", "a list of entries with api-key and base-url")
    out = []
    for i, entry in enumerate(value):
        key = f"codex-api-key[{i}]"
        _expect(entry, dict, key, "a mapping")
        secret = entry.get("api-key", entry.get("key"))
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{key}.api-key: expected a non-empty string")
        models = []
        for j, m in enumerate(entry.get("models") or []):
            _expect(m, dict, f"{key}.models[{j}]", "a mapping with name and optional alias")
            name = _expect(m.get("name"), str, f"{key}.models[{j}].name", "a string")
            models.append((name, str(m.get("alias") or name)))
        headers = entry.get("headers") or {}
        _expect(headers, dict, f"{key}.headers", "a mapping of header names to values")
        out.append(ApiKeyUpstream(
            api_key=secret,
            base_url=_url(entry.get("base-url", "https://api.openai.com/v1"), f"{key}.base-url"),
            models=tuple(models),
            headers=tuple((str(k), str(v)) for k, v in headers.items()),
        ))
    return tuple(out)


def _catalog(models: Any, aliases: Any) -> Catalog:
    catalog = Catalog.default()
    if models is not None:
        _expect(models, list, "models", "a list of model entries (id, levels, context-window, listed)")
        for i, m in enumerate(models):
            key = f"models[{i}]"
            if isinstance(m, str):
                m = {"id": m}
            _expect(m, dict, key, "a model id or a mapping")
            mid = _expect(m.get("id"), str, f"{key}.id", "a model id string")
            levels = _str_list(m.get("levels", ["low", "medium", "high", "xhigh"]), f"{key}.levels")
            for lv in levels:
                _choice(lv, f"{key}.levels", EFFORT_ORDER)
            catalog.models[mid] = ModelInfo(mid, levels, int(m.get("context-window", 272_000)), bool(m.get("listed", True)))
    if aliases is not None:
        _expect(aliases, dict, "model-aliases", "a mapping of alias: model")
        for alias, target in aliases.items():
            _expect(target, str, f"model-aliases.{alias}", "a model id string")
            catalog.aliases[str(alias).lower()] = target
    return catalog


def parse(data: Any) -> Config:
    """Validate a loaded YAML document and build a Config."""
    if data is None:
        data = {}
    _expect(data, dict, "config", "a mapping at the top level")
    warnings = tuple(f"unknown key {k!r} ignored" for k in data if k not in KNOWN_KEYS)

    routing = data.get("routing") or {}
    _expect(routing, dict, "routing", "a mapping")
    reasoning = data.get("reasoning") or {}
    _expect(reasoning, dict, "reasoning", "a mapping")
    ampcode = data.get("ampcode") or {}
    _expect(ampcode, dict, "ampcode", "a mapping")
    settings = Settings(
        catalog=_catalog(data.get("models"), data.get("model-aliases")),
        default_effort=_choice(reasoning.get("default-effort", "medium"), "reasoning.default-effort", EFFORT_ORDER),
        reasoning_summary=_choice(reasoning.get("summary", "auto"), "reasoning.summary", SUMMARIES),
        chat_reasoning=_choice(reasoning.get("chat-display", "reasoning_content"), "reasoning.chat-display", CHAT_REASONING),
    )
    auth_dir = _expect(data.get("auth-dir", DEFAULT_AUTH_DIR), str, "auth-dir", "a directory path")
    timeout = _expect(data.get("request-timeout-seconds", 600), int, "request-timeout-seconds", "a whole number of seconds")
    return Config(
        auth_dir=Path(os.path.expandvars(auth_dir)).expanduser(),
        api_keys=_str_list(data.get("api-keys") or [], "api-keys"),
        codex_base_url=_url(data.get("codex-base-url", DEFAULT_CODEX_BASE_URL), "codex-base-url"),
        oauth_issuer=_url(data.get("oauth-issuer", DEFAULT_OAUTH_ISSUER), "oauth-issuer"),
        strategy=_choice(routing.get("strategy", "round-robin"), "routing.strategy", STRATEGIES),
        api_key_upstreams=_api_key_upstreams(data.get("codex-api-key") or []),
        settings=settings,
        ampcode=amp_settings.parse(ampcode),
        request_timeout=timeout,
        max_request_bytes=_expect(data.get("max-request-bytes", 64 * 1024 * 1024), int, "max-request-bytes", "a whole number of bytes"),
        codex_cli_pooling=_expect(data.get("codex-cli-pooling", False), bool, "codex-cli-pooling", "true or false"),
        warnings=warnings,
    )


def load(path: str | Path | None) -> Config:
    """Read and validate a config file; `None` gives the built-in defaults."""
    if path is None:
        return Config()
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    try:
        return parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
