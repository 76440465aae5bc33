"""The live model catalog (pure; no I/O): reading the backend's `GET /models` answer, merging the
accounts' catalogs with the config's `models:`, and the snapshot kept on disk.

The backend's list depends on the account (its plan) and on the client version asked for, so each
account's list is kept apart: a model is routed only to accounts whose list holds it. One broken
entry must not cost the whole list, so entries are read one by one and a bad one is skipped with a
reason; an answer that is not a `{"models": [...]}` object is refused whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cliproxy.addons.translate.models import DEFAULT_MODELS, EFFORT_ORDER, Catalog, ModelInfo

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_VISIBILITY = ("list", "hide", "none")
SNAPSHOT_VERSION = 1


class CatalogError(ValueError):
    """An upstream catalog answer that cannot be used at all."""


def version_tuple(value: Any) -> tuple[int, ...] | None:
    """`"0.169.0"` or `[0, 169, 0]` (the backend's two spellings) → (0, 169, 0); anything else → None."""
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return tuple(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+){0,3}", value.strip()):
        return tuple(int(p) for p in value.strip().split("."))
    return None


def parse_entry(raw: Any, source: str = "upstream") -> ModelInfo:
    """One entry of the backend's list; ValueError says what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    slug = raw.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise ValueError("slug missing or not a model name")
    levels_raw = raw.get("supported_reasoning_levels", [])
    if not isinstance(levels_raw, list):
        raise ValueError("supported_reasoning_levels is not a list")
    levels = []
    for lv in levels_raw:
        effort = lv.get("effort") if isinstance(lv, dict) else lv
        if not isinstance(effort, str):
            raise ValueError("supported_reasoning_levels holds an entry without an effort")
        if effort in EFFORT_ORDER and effort not in levels:  # an effort newer than cliproxy is not offered
            levels.append(effort)
    levels.sort(key=EFFORT_ORDER.index)
    visibility = raw.get("visibility", "list")
    if visibility not in _VISIBILITY:
        raise ValueError(f"visibility {visibility!r} is not list/hide/none")
    context = raw.get("context_window", raw.get("max_context_window"))
    if context is None:
        context = 272_000
    if not isinstance(context, int) or isinstance(context, bool) or context <= 0:
        raise ValueError("context_window is not a positive whole number")
    lite = raw.get("use_responses_lite", False)
    if not isinstance(lite, bool):
        raise ValueError("use_responses_lite is not true/false")
    min_version = raw.get("minimal_client_version")
    min_parts = version_tuple(min_version) if min_version is not None else None
    if min_version is not None and min_parts is None:
        raise ValueError("minimal_client_version is not a version")
    tier = raw.get("default_service_tier", raw.get("service_tier"))
    if tier is not None and not isinstance(tier, str):
        raise ValueError("default_service_tier is not a string")
    modalities = raw.get("input_modalities", ["text", "image"])
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise ValueError("input_modalities is not a list of names")
    name = raw.get("display_name")
    return ModelInfo(
        slug,
        tuple(levels),
        context,
        listed=visibility == "list",
        lite=lite,
        display_name=name if isinstance(name, str) and name else slug,
        min_client_version=".".join(map(str, min_parts)) if min_parts is not None else None,
        service_tier=tier,
        input_modalities=tuple(modalities),
        source=source,
        raw=raw,
    )


def parse_models(payload: Any, source: str = "upstream") -> tuple[list[ModelInfo], list[str]]:
    """The entries of a `{"models": [...]}` answer and one problem line per skipped entry.

    Raises CatalogError when the answer as a whole is not a catalog (HTML, an error object, garbage)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        raise CatalogError('not a {"models": [...]} object')
    models: list[ModelInfo] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(payload["models"]):
        try:
            info = parse_entry(raw, source)
        except ValueError as exc:
            slug = raw.get("slug") if isinstance(raw, dict) and isinstance(raw.get("slug"), str) else None
            problems.append(f"entry {i}{f' ({slug[:60]!r})' if slug else ''} skipped: {exc}")
            continue
        if info.id in seen:
            problems.append(f"entry {i} ({info.id!r}) skipped: listed twice")
            continue
        seen.add(info.id)
        models.append(info)
    return models, problems


def parse_body(body: bytes, source: str = "upstream") -> tuple[list[ModelInfo], list[str]]:
    """`parse_models` of raw answer bytes (which may be anything at all)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise CatalogError("not JSON") from None
    return parse_models(payload, source)


# ---------------------------------------------------------------------------------------------
# Merging


@dataclass(frozen=True, slots=True)
class Merged:
    """The catalog in force and, per account, the models it may be sent (None = unknown: any)."""

    catalog: Catalog
    served: dict[str, frozenset[str] | None]
    source: str  # upstream | disk | built-in: where the base list came from


def merge(
    accounts: Mapping[str, Sequence[ModelInfo]],
    overrides: Iterable[ModelInfo] = (),
    aliases: Mapping[str, str] | None = None,
    fallback: Sequence[ModelInfo] = DEFAULT_MODELS,
) -> Merged:
    """Accounts' lists (the first account to list a model describes it; ordered by the entries' `priority`),
    then the config's `models:` on top. With no account list at all, `fallback` (built-in) is the base.

    A config model that no account lists is a model the user vouches for: every account may serve it.
    A config entry for a model some account lists only changes its description, not who may serve it."""
    models: dict[str, ModelInfo] = {}
    for entries in accounts.values():
        for info in entries:
            models.setdefault(info.id, info)
    models = dict(sorted(models.items(), key=lambda kv: _priority(kv[1])))  # the backend's order, whoever listed it first
    upstream_ids = set(models)
    source = next((e[0].source for e in accounts.values() if e), "built-in")
    if not models:
        models = {m.id: m for m in fallback}
        source = fallback[0].source if fallback else "built-in"
    extra: set[str] = set()
    for info in overrides:
        models[info.id] = replace(info, source="config", raw=models[info.id].raw if info.id in models else None)
        if info.id not in upstream_ids:
            extra.add(info.id)
    served: dict[str, frozenset[str] | None] = {}
    for key, entries in accounts.items():
        served[key] = frozenset({m.id for m in entries} | extra) if entries else None
    return Merged(Catalog(models, dict(aliases or {})), served, source)


def _priority(info: ModelInfo) -> int:
    value = info.raw.get("priority") if info.raw else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 1 << 30


def codex_listing(catalog: Catalog, client_version: str | None = None, usable: Iterable[str] | None = None) -> dict[str, Any]:
    """The Codex CLI's own shape, `{"models": [...]}`: the upstream entries as the backend sent them.

    Entries known only from the built-in catalog or the config are left out: the CLI needs fields
    cliproxy cannot know (its base instructions among them), and keeps its own built-in entry for
    any model missing here. Entries newer than `client_version` and models no account may use are
    left out too, as the backend itself would."""
    wanted = version_tuple(client_version) if client_version else None
    allowed = set(usable) if usable is not None else None
    out = []
    for info in catalog.models.values():
        if info.raw is None or (allowed is not None and info.id not in allowed):
            continue
        needed = version_tuple(info.min_client_version) if info.min_client_version else None
        if wanted is not None and needed is not None and needed > wanted:
            continue
        out.append(info.raw)
    return {"models": out}


# ---------------------------------------------------------------------------------------------
# The snapshot on disk: the last good answer of each account


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One account's last good catalog answer."""

    etag: str | None
    fetched_at: float
    models: tuple[dict[str, Any], ...]  # raw entries, as the backend sent them
    client_version: str | None = None  # the version they were read for (the ETag holds for that one only)


def dump_snapshots(snapshots: Mapping[str, Snapshot], client_version: str) -> dict[str, Any]:
    """The file's JSON document (read back by `load_snapshots`)."""
    return {
        "version": SNAPSHOT_VERSION,
        "client_version": client_version,
        "accounts": {k: {"etag": s.etag, "fetched_at": s.fetched_at, "models": list(s.models)} for k, s in snapshots.items()},
    }


def load_snapshots(text: str) -> dict[str, Snapshot]:
    """The snapshots in a saved file; CatalogError when it is not one."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise CatalogError("not JSON") from None
    if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION or not isinstance(data.get("accounts"), dict):
        raise CatalogError("not a cliproxy catalog snapshot")
    version = data.get("client_version") if isinstance(data.get("client_version"), str) else None
    out = {}
    for key, entry in data["accounts"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("models"), list):
            continue
        etag = entry.get("etag") if isinstance(entry.get("etag"), str) else None
        fetched = f if isinstance(f := entry.get("fetched_at"), (int, float)) else 0.0
        out[str(key)] = Snapshot(etag, float(fetched), tuple(m for m in entry["models"] if isinstance(m, dict)), version)
    return out
