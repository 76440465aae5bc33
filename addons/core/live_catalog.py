"""The live model catalog in the running proxy (no mitmproxy import): each account's `GET /models`
read at start, every `models-refresh-seconds` and when an answer's `x-models-etag` moves, the last
good answers kept on disk, and the merged catalog and each account's models laid onto the runtime.

Nothing here may stop the proxy: with no account, no network, a 401, HTML or garbage, the last
good list stays in force (from this run, else from disk, else the built-in one) and one line says why.
The parsing and merging are pure (`translate.catalog`); this module only does the I/O and the timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from cliproxy.addons.translate import catalog as cat
from cliproxy.addons.translate import errors
from cliproxy.addons.translate.models import DEFAULT_MODELS, ModelInfo
from cliproxy.auth.pool import Member
from cliproxy.auth.quota import STATE_DIR, write_state
from cliproxy.auth.store import Account

if TYPE_CHECKING:
    from cliproxy.addons.core.runtime import Runtime

logger = logging.getLogger(__name__)

CATALOG_FILE = "models-catalog.json"  # in <auth-dir>/.cliproxy-state/
FETCH_TIMEOUT = 15.0  # seconds for one catalog read; serving never waits for it
RETRY_AFTER_FAILURE = 300.0  # seconds before a failed read is tried again (at most the refresh interval)
ORIGINATOR = "codex_cli_rs"


@dataclass(slots=True)
class AccountCatalog:
    """What is known of one account's catalog."""

    entries: list[ModelInfo] = field(default_factory=list)
    etag: str | None = None
    raw: tuple[dict[str, Any], ...] = ()
    fetched_at: float = 0.0  # when the backend last confirmed it (0: only from disk)
    client_version: str | None = None  # the version it was read for (an ETag only holds for that one)
    due: float = 0.0  # when to read it next
    problem: str | None = None  # the last failure, logged once


class LiveCatalog:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.accounts: dict[str, AccountCatalog] = {}
        self.merged = cat.merge({})
        self._disk_dir: Path | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._source_logged: str | None = None

    # -- state ---------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.runtime.config.auth_dir) / STATE_DIR / CATALOG_FILE

    def load_disk(self) -> None:
        """Read the last good answers saved by an earlier run (once per auth dir)."""
        if self._disk_dir == self.runtime.config.auth_dir:
            return
        self._disk_dir = self.runtime.config.auth_dir
        self.accounts = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("cliproxy: cannot read the saved model catalog %s: %s", self.path, exc.strerror or exc)
            return
        try:
            snapshots = cat.load_snapshots(text)
        except cat.CatalogError as exc:
            logger.warning("cliproxy: the saved model catalog %s is unusable (%s); ignoring it", self.path, exc)
            return
        for key, snap in snapshots.items():
            entries, _ = cat.parse_models({"models": list(snap.models)}, source="disk")
            if entries:
                self.accounts[key] = AccountCatalog(entries, snap.etag, snap.models, 0.0, snap.client_version)

    def save(self) -> None:
        keys = {m.key for m in self._account_members()}
        snaps = {k: cat.Snapshot(a.etag, a.fetched_at, a.raw) for k, a in self.accounts.items() if k in keys and a.raw}
        try:
            write_state(self.runtime.config.auth_dir, CATALOG_FILE, cat.dump_snapshots(snaps, self.runtime.config.codex_client_version))
        except OSError as exc:
            logger.warning("cliproxy: cannot save the model catalog to %s: %s", self.path, exc.strerror or exc)

    def _account_members(self) -> list[Member]:
        return [m for m in self.runtime.pool.members if isinstance(m.source, Account)]

    def apply(self) -> None:
        """Merge what is known and put it in force: the catalog in the config, each account's models."""
        config = self.runtime.config
        members = self._account_members()
        lists = {m.key: self.accounts[m.key].entries if m.key in self.accounts else [] for m in members}
        self.merged = cat.merge(lists, config.models, config.settings.catalog.aliases)
        self.runtime.config = replace(config, settings=replace(config.settings, catalog=self.merged.catalog))
        for m in members:
            m.models = self.merged.served.get(m.key)
        if self.merged.source != self._source_logged:
            self._source_logged = self.merged.source
            if self.merged.source == "upstream":
                logger.info("cliproxy: model catalog from the backend (%d models)", len(self.merged.catalog.models))
            else:
                why = "saved by an earlier run" if self.merged.source == "disk" else "built in; no account's live catalog read yet"
                logger.info("cliproxy: model catalog %s (%d models)", why, len(self.merged.catalog.models))

    # -- reading ---------------------------------------------------------------------------------------
    def due(self, now: float | None = None) -> list[Member]:
        """Accounts whose catalog should be read now (none twice at once)."""
        now = time.time() if now is None else now
        out = []
        for m in self._account_members():
            if m.parked or (m.key in self._tasks and not self._tasks[m.key].done()):
                continue
            if self.accounts.get(m.key, AccountCatalog()).due <= now:
                out.append(m)
        return out

    def start_due(self) -> None:
        """Start a read for every account that is due (called by the running proxy's timer)."""
        for member in self.due():
            self._tasks[member.key] = asyncio.get_running_loop().create_task(self.refresh(member))

    def etag_seen(self, key: str | None, etag: str | None) -> None:
        """An answer named the catalog version it was made with: read the account's catalog again when it moved."""
        if not key or not etag:
            return
        state = self.accounts.get(key)
        if state is not None and state.etag != etag and state.due > time.time():
            state.due = 0.0

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def refresh(self, member: Member) -> bool:
        """Read one account's catalog; True when what is in force changed. Never raises."""
        state = self.accounts.setdefault(member.key, AccountCatalog())
        interval = self.runtime.config.models_refresh
        state.due = time.time() + min(interval, RETRY_AFTER_FAILURE)
        try:
            changed = await self._read(member, state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a read must never take the proxy down
            self._failed(member, state, f"failed ({type(exc).__name__})")
            return False
        if changed is None:
            return False
        state.due = time.time() + interval
        if state.problem is not None:
            logger.info("cliproxy: model catalog of %s read again", member.label)
            state.problem = None
        if changed:
            self.save()
            self.apply()
        return changed

    async def _read(self, member: Member, state: AccountCatalog) -> bool | None:
        """None after a failure (logged); else whether the account's list changed."""
        config = self.runtime.config
        account = await self.runtime._fresh(member)
        if account is None:
            self._failed(member, state, "has no usable token")
            return None
        version = config.codex_client_version
        headers = {
            "authorization": f"Bearer {account.access_token}",
            "version": version,
            "originator": ORIGINATOR,
            "user-agent": f"{ORIGINATOR}/{version}",
            "accept": "application/json",
        }
        if account.account_id:
            headers["chatgpt-account-id"] = account.account_id
        if state.etag and state.client_version == version and state.entries:
            headers["if-none-match"] = state.etag
        url = config.codex_base_url.rstrip("/") + "/models"
        try:
            r = await self.runtime.http.get(url, params={"client_version": version}, headers=headers, timeout=FETCH_TIMEOUT)
        except httpx.TimeoutException:
            self._failed(member, state, f"no answer within {FETCH_TIMEOUT:g}s")
            return None
        except httpx.HTTPError as exc:
            self._failed(member, state, f"backend unreachable ({type(exc).__name__})")
            return None
        if r.status_code == 304 and state.entries:
            state.fetched_at = time.time()
            return False
        if r.status_code != 200:
            self._failed(member, state, f"answered {r.status_code}")
            return None
        try:
            entries, problems = cat.parse_body(r.content)
        except cat.CatalogError as exc:
            kind = r.headers.get("content-type", "?").split(";")[0]
            self._failed(member, state, f"answered something that is not a catalog ({exc}; {kind})")
            return None
        for problem in problems:
            logger.warning("cliproxy: model catalog of %s: %s", member.label, problem)
        if not entries:
            self._failed(member, state, "answered a catalog without a usable model")
            return None
        before = [(m, m.raw) for m in state.entries]
        state.entries, state.raw = entries, tuple(m.raw for m in entries if m.raw is not None)
        state.etag, state.client_version, state.fetched_at = r.headers.get("etag"), version, time.time()
        return before != [(m, m.raw) for m in entries] or any(m.source != "upstream" for m, _ in before)

    def _failed(self, member: Member, state: AccountCatalog, problem: str) -> None:
        if problem != state.problem:
            state.problem = problem
            keeping = "the last good list" if state.entries else ("the saved or built-in list")
            logger.warning("cliproxy: model catalog of %s not read: %s; keeping %s", member.label, problem, keeping)

    # -- serving ---------------------------------------------------------------------------------------
    def usable(self) -> list[str]:
        """Listed models (and API-key aliases) some pool member may be sent; all listed when the pool is empty."""
        members = self.runtime.pool.members
        ids = [m.id for m in self.runtime.config.settings.catalog.listed() if not members or any(mb.serves(m.id) for mb in members)]
        ids += [alias for up in self.runtime.config.api_key_upstreams for _, alias in up.models if alias not in ids]
        return ids

    def usable_all(self) -> set[str]:
        """Every catalog model, hidden ones too, that some pool member may be sent (all with an empty pool)."""
        members = self.runtime.pool.members
        return {mid for mid in self.runtime.config.settings.catalog.models if not members or any(m.serves(mid) for m in members)}

    def model_error(self, model: str) -> errors.ProxyError | None:
        """A 404 `model_not_found` for a model outside the catalog, or one no pool member may use."""
        members = self.runtime.pool.members
        catalog = self.runtime.config.settings.catalog
        named = any(m.models is not None and model in m.models for m in members)
        if model in catalog.models or named:
            if not members or any(m.serves(model) for m in members):
                return None
            why = f"no account in the pool may use model {model!r} (their plans' catalogs do not list it)"
        elif any(m.id == model for m in DEFAULT_MODELS):  # a Codex model, missing from every account's live list
            why = f"no account in the pool may use model {model!r} (their plans' catalogs do not list it)"
        else:
            why = f"model {model!r} is not in cliproxy's catalog"
        some = self.usable()
        hint = f"; available: {', '.join(some[:6])}{', …' if len(some) > 6 else ''} (GET /v1/models lists them)" if some else ""
        return errors.ProxyError(404, why + hint, "invalid_request_error", "model_not_found", "model")
