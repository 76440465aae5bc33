"""The Codex model catalog, model-name suffixes and reasoning-effort resolution."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: All effort names the backend knows, weakest first.
EFFORT_ORDER = ("none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra")
_FOUR = ("low", "medium", "high", "xhigh")
_FIVE = ("low", "medium", "high", "xhigh", "max")
_SIX = ("low", "medium", "high", "xhigh", "max", "ultra")
#: Where a catalog entry came from (shown by `cliproxy models`).
SOURCES = ("upstream", "disk", "config", "built-in")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    levels: tuple[str, ...] = _FOUR
    context_window: int = 272_000
    listed: bool = True
    lite: bool = False  # speaks "Responses Lite" (`use_responses_lite` in the upstream catalog): tools in an `additional_tools` item
    display_name: str = ""
    min_client_version: str | None = None  # `minimal_client_version`: older clients do not get the model
    service_tier: str | None = None  # the tier the catalog serves it with by default (`priority` = fast)
    input_modalities: tuple[str, ...] = ("text", "image")
    source: str = "built-in"  # one of SOURCES
    raw: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)  # the upstream entry as sent


#: The Codex CLI's own default model.
DEFAULT_MODEL = "gpt-6.1-sol"

# The built-in catalog is the Codex CLI 0.169.0's: used until (and whenever) no account's live
# catalog can be read. `models:` in the config extends or overrides it, as it does the live one.
DEFAULT_MODELS: tuple[ModelInfo, ...] = (  # in the CLI's order of priority
    ModelInfo("gpt-6.1-sol", _SIX, lite=True, display_name="GPT-6.1-Sol", min_client_version="0.153.0"),
    ModelInfo("gpt-6-astra", _SIX, lite=True, display_name="GPT-6-Astra", min_client_version="0.153.0"),
    ModelInfo("gpt-6-sol", _SIX, lite=True, display_name="GPT-6-Sol", min_client_version="0.155.0", service_tier="priority"),
    ModelInfo("gpt-6-luna", _FIVE, lite=True, display_name="GPT-6-Luna", min_client_version="0.155.0", service_tier="priority"),
    ModelInfo("gpt-5.6-sol", _SIX, lite=True, display_name="GPT-5.6-Sol", min_client_version="0.144.0"),
    ModelInfo("gpt-6.1-terra", _SIX, 500_000, lite=True, display_name="GPT-6.1 Terra", min_client_version="0.153.0"),
    ModelInfo("gpt-5.6-terra", _SIX, lite=True, display_name="GPT-5.6-Terra", min_client_version="0.144.0"),
    ModelInfo("gpt-5.6-luna", _FIVE, lite=True, display_name="GPT-5.6-Luna", min_client_version="0.144.0"),
    ModelInfo("gpt-5.5", _FOUR, display_name="GPT-5.5", min_client_version="0.124.0"),  # the classic (non-lite) legacy coding model
    ModelInfo("codex-auto-review", _FIVE, listed=False, lite=True, display_name="Codex Auto Review", min_client_version="0.98.0"),
)


_PAREN_SUFFIX = re.compile(r"^(?P<base>.+?)\((?P<value>[^()]*)\)$")
_DASH_SUFFIX = re.compile(r"^(?P<base>.+)[-_:](?P<value>none|minimal|low|medium|high|xhigh|max|ultra)$")


class EffortError(ValueError):
    """A reasoning effort the client asked for that is not an effort at all."""


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """What a client's model string resolves to."""

    requested: str  # as the client sent it
    model: str  # upstream slug
    suffix_effort: str | None  # effort named by a `(high)` / `-high` suffix


@dataclass(slots=True)
class Catalog:
    models: dict[str, ModelInfo] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # lower-case alias -> model id

    @classmethod
    def default(cls) -> Catalog:
        return cls({m.id: m for m in DEFAULT_MODELS})

    def listed(self) -> list[ModelInfo]:
        return [m for m in self.models.values() if m.listed]

    def info(self, model: str) -> ModelInfo | None:
        return self.models.get(model)

    def lite(self, model: str) -> bool:
        """Whether `model` speaks Responses Lite; models the catalog does not know get the classic form."""
        info = self.models.get(model)
        return info is not None and info.lite

    def resolve(self, requested: str) -> ModelChoice:
        """Strip an effort suffix and apply aliases. Unknown names pass through unchanged."""
        name = requested.strip()
        effort: str | None = None
        if m := _PAREN_SUFFIX.match(name):
            name, effort = m["base"].strip(), m["value"].strip().lower()
        elif not self._known(name) and (m := _DASH_SUFFIX.match(name)) and self._known(m["base"]):
            name, effort = m["base"], m["value"]
        return ModelChoice(requested, self._canonical(name), effort)

    def _known(self, name: str) -> bool:
        return name in self.models or name.lower() in self.aliases

    def _canonical(self, name: str) -> str:
        if name in self.models:
            return name
        return self.aliases.get(name.lower(), name)


def budget_to_effort(budget: int) -> str:
    """Map a thinking-token budget to an effort level (thresholds as CLIProxyAPI uses them)."""
    if budget < 0:
        return "auto"
    if budget == 0:
        return "none"
    if budget <= 512:
        return "minimal"
    if budget <= 1024:
        return "low"
    if budget <= 8192:
        return "medium"
    if budget <= 24576:
        return "high"
    return "xhigh"


def normalize_effort(value: object) -> str:
    """Turn a client's effort value (level name, budget number, `auto`) into a level name or `auto`."""
    if isinstance(value, bool):
        raise EffortError(f"reasoning effort must be a level name, not {value!r}")
    if isinstance(value, int):
        return budget_to_effort(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v.lstrip("-").isdigit():
            return budget_to_effort(int(v))
        if v in EFFORT_ORDER or v == "auto":
            return v
    raise EffortError(f"unknown reasoning effort {value!r}; use one of {', '.join(EFFORT_ORDER)} or auto")


def clamp_effort(effort: str, info: ModelInfo | None, default: str = "medium") -> str:
    """Fit an effort to the levels a model supports (nearest level, never an error)."""
    if effort == "auto":
        effort = default
    levels = info.levels if info and info.levels else EFFORT_ORDER  # a live entry may list none
    if effort in levels:
        return effort
    rank = EFFORT_ORDER.index(effort)
    ranked = [(EFFORT_ORDER.index(lv), lv) for lv in levels]
    below = [lv for r, lv in ranked if r <= rank]
    return below[-1] if below else ranked[0][1]
