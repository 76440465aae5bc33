"""The cliproxy YAML config: parsing and validation (pure; no mitmproxy import).

Key names follow CLIProxyAPI's where the concept is the same. Every error names the key and says
what was expected, so a user can fix the file from the log line alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cliproxy.addons.core import amp_settings, cors
from cliproxy.addons.core.validate import ConfigError, choice, expect, non_negative, str_list, url
from cliproxy.addons.store import pg
from cliproxy.addons.translate.codex_body import Settings
from cliproxy.addons.translate.models import EFFORT_ORDER, Catalog, ModelInfo

DEFAULT_CODEX_BASE_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_OAUTH_ISSUER = "https://auth.openai.com"
DEFAULT_AUTH_DIR = "~/.cli-proxy-api"
STRATEGIES = ("round-robin", "fill-first")
CHAT_REASONING = ("reasoning_content", "think-tags", "hidden")
SUMMARIES = ("auto", "concise", "detailed", "none")
KNOWN_KEYS = {
    "auth-dir",
    "api-keys",
    "codex-base-url",
    "oauth-issuer",
    "routing",
    "codex-api-key",
    "model-aliases",
    "models",
    "reasoning",
    "ampcode",
    "request-timeout-seconds",
    "codex-cli-pooling",
    "max-request-bytes",
    "cors-origins",
    "responses-retention-hours",
    "responses-max-mb",
    "codex-client-version",
    "models-refresh-seconds",
    "usage-retention-days",
    "quota-probe-seconds",
    "responses-websocket",
    "store",
}
DEFAULT_CLIENT_VERSION = "0.169.0"  # the Codex CLI release whose wire cliproxy speaks
DEFAULT_MODELS_REFRESH = 3 * 3600


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
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the base URL (none by default)
    responses_retention_hours: float = 24  # how long stored responses and conversations are kept
    responses_max_mb: float = 256  # size cap of stored responses (oldest go first)
    codex_client_version: str = DEFAULT_CLIENT_VERSION  # `version` / `client_version` sent to the backend
    models_refresh: int = DEFAULT_MODELS_REFRESH  # seconds between reads of each account's live catalog
    models: tuple[ModelInfo, ...] = ()  # the config's own `models:` entries, laid over the live catalog
    usage_retention_days: float = 90  # how long usage ledger rows are kept (0: not at all, no ledger)
    quota_probe_seconds: float = 300  # how often an account resting on a usage limit re-reads wham/usage
    responses_websocket: bool = True  # serve the Responses WebSocket transport (false: 426, clients use HTTP)
    store: str | None = field(default_factory=lambda: _store(None), repr=False)  # a PostgreSQL DSN shared by hosts
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
        out.append(
            ApiKeyUpstream(
                api_key=secret,
                base_url=url(entry.get("base-url", "https://api.openai.com/v1"), f"{key}.base-url"),
                models=tuple(models),
                headers=tuple((str(k), str(v)) for k, v in headers.items()),
            )
        )
    return tuple(out)


def _catalog(models: Any, aliases: Any) -> tuple[Catalog, tuple[ModelInfo, ...]]:
    """The built-in catalog with the config's models and aliases on it, and those models alone."""
    catalog = Catalog.default()
    own: list[ModelInfo] = []
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
            context = expect(m.get("context-window", 272_000), int, f"{key}.context-window", "a whole number of tokens")
            lite = expect(m.get("lite", False), bool, f"{key}.lite", "true or false")
            info = ModelInfo(mid, levels, context, bool(m.get("listed", True)), lite, display_name=mid, source="config")
            catalog.models[mid] = info
            own.append(info)
    if aliases is not None:
        expect(aliases, dict, "model-aliases", "a mapping of alias: model")
        for alias, target in aliases.items():
            expect(target, str, f"model-aliases.{alias}", "a model id string")
            catalog.aliases[str(alias).lower()] = target
    return catalog, tuple(own)


def _client_version(value: Any) -> str:
    """A release number such as 0.169.0: it goes into the `version` and `user-agent` headers and the catalog's
    `client_version` as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    text = expect(value, str, "codex-client-version", 'a version such as "0.169.0"').strip()
    if not re.fullmatch(r"\d+(\.\d+){1,3}", text):
        raise ConfigError(f'codex-client-version: expected a version such as "0.169.0", got {text!r}')
    return text


def _refresh(value: Any) -> int:
    seconds = expect(value, int, "models-refresh-seconds", "a whole number of seconds")
    if seconds < 1:
        raise ConfigError("models-refresh-seconds: expected at least 1 second")
    return seconds


def _probe(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError("quota-probe-seconds: expected a number of seconds above 0")
    return float(value)


def _store(value: Any) -> str | None:
    """The shared store's DSN: the config's `store`, else `CLIPROXY_STORE_DSN`, else none (files and SQLite)."""
    if value is None:
        value = os.environ.get(pg.DSN_ENV) or None
        key = pg.DSN_ENV
    else:
        key = "store"
    if value is None:
        return None
    expect(value, str, key, "a postgresql:// DSN")
    if not pg.is_dsn(value):
        raise ConfigError(f"{key}: expected a postgresql://user:password@host:port/database DSN, got {pg.redact(value)!r}")
    return value


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
    catalog, own_models = _catalog(data.get("models"), data.get("model-aliases"))
    settings = Settings(
        catalog=catalog,
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
        cors_origins=cors.origins(data.get("cors-origins")),
        responses_retention_hours=non_negative(data.get("responses-retention-hours", 24), "responses-retention-hours", "a number of hours"),
        responses_max_mb=non_negative(data.get("responses-max-mb", 256), "responses-max-mb", "a number of megabytes"),
        codex_client_version=_client_version(data.get("codex-client-version", DEFAULT_CLIENT_VERSION)),
        models_refresh=_refresh(data.get("models-refresh-seconds", DEFAULT_MODELS_REFRESH)),
        models=own_models,
        usage_retention_days=non_negative(data.get("usage-retention-days", 90), "usage-retention-days", "a number of days"),
        quota_probe_seconds=_probe(data.get("quota-probe-seconds", 300)),
        responses_websocket=expect(data.get("responses-websocket", True), bool, "responses-websocket", "true or false"),
        store=_store(data.get("store")),
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
