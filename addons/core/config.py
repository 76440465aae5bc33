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
from cliproxy.addons.core import amp_settings
from cliproxy.addons.core.validate import ConfigError, choice, expect, str_list, url
from cliproxy.addons.translate.codex_body import Settings
from cliproxy.addons.translate.models import EFFORT_ORDER, Catalog, ModelInfo

DEFAULT_CODEX_BASE_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_OAUTH_ISSUER = "https://auth.openai.com"
DEFAULT_AUTH_DIR = "~/.cli-proxy-api"
STRATEGIES = ("round-robin", "fill-first")
CHAT_REASONING = ("reasoning_content", "think-tags", "hidden")
SUMMARIES = ("auto", "concise", "detailed", "none")
KNOWN_KEYS = {
    "auth-dir", "api-keys", "codex-base-url", "oauth-issuer", "routing", "codex-api-key", "model-aliases",
    "models", "reasoning", "ampcode", "request-timeout-seconds", "codex-cli-pooling", "max-request-bytes",
    "responses-websocket",
}


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
    responses_websocket: bool = True  # serve the Responses WebSocket transport (false: 426, clients use HTTP)
    warnings: tuple[str, ...] = ()

    @property
    def responses_url(self) -> str:
        return self.codex_base_url.rstrip("/") + "/responses"


def _api_key_upstreams(value: Any) -> tuple[ApiKeyUpstream, ...]:
    expect(value, list, "codex-api-key", "a list of entries with api-key and base-url")
    out = []
    for i, entry in enumerate(value):
        key = f"codex-api-key[{i}]"
        expect(entry, dict, key, "a mapping")
        secret = entry.get("api-key", entry.get("key"))
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{key}.api-key: expected a non-empty string")
        models = []
        for j, m in enumerate(entry.get("models") or []):
            expect(m, dict, f"{key}.models[{j}]", "a mapping with name and optional alias")
            name = expect(m.get("name"), str, f"{key}.models[{j}].name", "a string")
            models.append((name, str(m.get("alias") or name)))
        headers = entry.get("headers") or {}
        expect(headers, dict, f"{key}.headers", "a mapping of header names to values")
        out.append(ApiKeyUpstream(
            api_key=secret,
            base_url=url(entry.get("base-url", "https://api.openai.com/v1"), f"{key}.base-url"),
            models=tuple(models),
            headers=tuple((str(k), str(v)) for k, v in headers.items()),
        ))
    return tuple(out)


def _catalog(models: Any, aliases: Any) -> Catalog:
    catalog = Catalog.default()
    if models is not None:
        expect(models, list, "models", "a list of model entries (id, levels, context-window, listed)")
        for i, m in enumerate(models):
            key = f"models[{i}]"
            if isinstance(m, str):
                m = {"id": m}
            expect(m, dict, key, "a model id or a mapping")
            mid = expect(m.get("id"), str, f"{key}.id", "a model id string")
            levels = str_list(m.get("levels", ["low", "medium", "high", "xhigh"]), f"{key}.levels")
            for lv in levels:
                choice(lv, f"{key}.levels", EFFORT_ORDER)
            catalog.models[mid] = ModelInfo(mid, levels, int(m.get("context-window", 272_000)), bool(m.get("listed", True)))
    if aliases is not None:
        expect(aliases, dict, "model-aliases", "a mapping of alias: model")
        for alias, target in aliases.items():
            expect(target, str, f"model-aliases.{alias}", "a model id string")
            catalog.aliases[str(alias).lower()] = target
    return catalog


def parse(data: Any) -> Config:
    """Validate a loaded YAML document and build a Config."""
    if data is None:
        data = {}
    expect(data, dict, "config", "a mapping at the top level")
    warnings = tuple(f"unknown key {k!r} ignored" for k in data if k not in KNOWN_KEYS)

    routing = data.get("routing") or {}
    expect(routing, dict, "routing", "a mapping")
    reasoning = data.get("reasoning") or {}
    expect(reasoning, dict, "reasoning", "a mapping")
    ampcode = data.get("ampcode") or {}
    expect(ampcode, dict, "ampcode", "a mapping")
    settings = Settings(
        catalog=_catalog(data.get("models"), data.get("model-aliases")),
        default_effort=choice(reasoning.get("default-effort", "medium"), "reasoning.default-effort", EFFORT_ORDER),
        reasoning_summary=choice(reasoning.get("summary", "auto"), "reasoning.summary", SUMMARIES),
        chat_reasoning=choice(reasoning.get("chat-display", "reasoning_content"), "reasoning.chat-display", CHAT_REASONING),
    )
    auth_dir = expect(data.get("auth-dir", DEFAULT_AUTH_DIR), str, "auth-dir", "a directory path")
    timeout = expect(data.get("request-timeout-seconds", 600), int, "request-timeout-seconds", "a whole number of seconds")
    return Config(
        auth_dir=Path(os.path.expandvars(auth_dir)).expanduser(),
        api_keys=str_list(data.get("api-keys") or [], "api-keys"),
        codex_base_url=url(data.get("codex-base-url", DEFAULT_CODEX_BASE_URL), "codex-base-url"),
        oauth_issuer=url(data.get("oauth-issuer", DEFAULT_OAUTH_ISSUER), "oauth-issuer"),
        strategy=choice(routing.get("strategy", "round-robin"), "routing.strategy", STRATEGIES),
        api_key_upstreams=_api_key_upstreams(data.get("codex-api-key") or []),
        settings=settings,
        ampcode=amp_settings.parse(ampcode),
        request_timeout=timeout,
        max_request_bytes=expect(data.get("max-request-bytes", 64 * 1024 * 1024), int, "max-request-bytes", "a whole number of bytes"),
        codex_cli_pooling=expect(data.get("codex-cli-pooling", False), bool, "codex-cli-pooling", "true or false"),
        responses_websocket=expect(data.get("responses-websocket", True), bool, "responses-websocket", "true or false"),
        warnings=warnings,
    )


def locate(explicit: str | None) -> Path | None:
    """The config file in force: the one named, else `config.yaml` in the current directory when it exists."""
    if explicit:
        return Path(explicit).expanduser()
    default = Path("config.yaml")
    return default if default.exists() else None


def load(path: str | Path | None) -> Config:
    """Read and validate a config file; `None` gives the built-in defaults."""
    if path is None:
        return Config()
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
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
