"""State shared by the cliproxy addons: the config in force and the account pool (no mitmproxy import).

Addons receive one `Runtime` at construction. Reloads build new objects and swap them in whole,
so a hook never sees a half-applied config.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import certifi
import httpx

from cliproxy.addons.core.config import ApiKeyUpstream, Config
from cliproxy.addons.core.live_catalog import LiveCatalog
from cliproxy.auth.pool import Member, Pool
from cliproxy.auth.quota import parse_wham_usage, read_state, room_in, state_path, write_state
from cliproxy.auth.refresh import RefreshError, TokenRefresher
from cliproxy.auth.store import Account, fingerprint, load_accounts

logger = logging.getLogger(__name__)

STATE_WRITE_INTERVAL = 2.0  # seconds between quota-state writes per account


@dataclass(frozen=True, slots=True)
class Credential:
    """What a rewritten request carries upstream for one member."""

    member: Member
    url: str  # full URL of the Responses endpoint to call
    headers: tuple[tuple[str, str], ...]  # auth headers (secret: never log)
    model: str | None = None  # upstream model name when the member renames it (API-key aliases)


class Runtime:
    def __init__(self) -> None:
        self.config = Config()
        self.pool = Pool()
        self.refresher = TokenRefresher(self.config.oauth_issuer)  # replaced when the issuer changes
        self._http: httpx.AsyncClient | None = None
        self._state_written: dict[str, float] = {}
        self._state_pending: set[str] = set()
        self._cleared: dict[str, str] = {}  # member key -> the last `rest_cleared_at` of its state file honoured
        self._probed: dict[str, float] = {}
        self._wham: dict[
            str, dict
        ] = {}  # member key -> plan, reset credits and credits from its last wham/usage  # member key -> when its quota is to be re-read (resting on a usage limit)
        self._refresh_warned: dict[str, str] = {}  # member key -> code of the refresh failure already logged
        self.catalog = LiveCatalog(self)  # the live model catalog: merged into config.settings.catalog, per-account models

    # -- loading ---------------------------------------------------------------------------------
    def apply_config(self, config: Config) -> None:
        if config.oauth_issuer != self.config.oauth_issuer:
            self.refresher = TokenRefresher(config.oauth_issuer)
        self.config = config
        self.pool.strategy = config.strategy
        self.catalog.load_disk()
        self.reload_accounts()

    def reload_accounts(self) -> None:
        members = []
        for account in load_accounts(self.config.auth_dir):
            if not account.disabled:
                members.append(Member(account.name, account.label, account, credential=fingerprint(account.refresh_token)))
        for n, up in enumerate(self.config.api_key_upstreams):
            models = frozenset(alias for _, alias in up.models) or None
            members.append(Member(f"api-key:{n}", f"api-key#{n + 1}", up, models, credential=fingerprint(up.api_key)))
        self.pool.replace(members)
        self.catalog.apply()  # the accounts' own model lists, and the catalog they make
        for m in self.pool.members:
            if isinstance(m.source, Account):
                saved = read_state(self.config.auth_dir, m.key)
                m.quota = m.quota or saved.get("quota", {})
                self._cleared.setdefault(m.key, str(saved.get("rest_cleared_at") or ""))
        logger.info("cliproxy: %d account(s) in the pool", len(members))
        if not members:
            logger.warning("cliproxy: no accounts in %s yet: run `cliproxy login` (picked up without a restart)", self.config.auth_dir)

    @property
    def http(self) -> httpx.AsyncClient:
        """Client for the proxy's own upstream calls (failover retries); ignores the shell's proxy settings."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                trust_env=False,
                verify=ssl.create_default_context(cafile=certifi.where()),
                timeout=httpx.Timeout(self.config.request_timeout, connect=10),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- serving ---------------------------------------------------------------------------------
    async def credential(self, model: str, exclude: Iterable[str] = frozenset(), session: str | None = None) -> Credential | None:
        """A usable credential for `model`, refreshing an OAuth token first when it is about to expire."""
        self.honour_clears()
        for member in self.pool.candidates(model, exclude, session):
            if isinstance(member.source, ApiKeyUpstream):
                return self._api_key_credential(member, model)
            account = await self._fresh(member)
            if account is not None:
                return self._account_credential(member, account)
        return None

    async def reauthorize(self, member: Member) -> Credential | None:
        """After a 401: refresh the member's token once (unless another request already did)."""
        if not isinstance(member.source, Account):
            return None
        account = await self._fresh(member, force=True)
        return self._account_credential(member, account) if account is not None else None

    def _api_key_credential(self, member: Member, model: str) -> Credential:
        up: ApiKeyUpstream = member.source
        headers = (("authorization", f"Bearer {up.api_key}"), *up.headers)
        rename = next((name for name, alias in up.models if alias == model), None)
        return Credential(member, up.base_url.rstrip("/") + "/responses", headers, rename)

    def _account_credential(self, member: Member, account: Account) -> Credential:
        headers = [("authorization", f"Bearer {account.access_token}")]
        if account.account_id:
            headers.append(("chatgpt-account-id", account.account_id))
        return Credential(member, self.config.responses_url, tuple(headers))

    async def _fresh(self, member: Member, force: bool = False) -> Account | None:
        """The member's account with a usable token, or None after parking the member.

        A failed refresh does not stop a token that has not expired yet: it is used until it runs out
        or is refused (`force`). A dead login is parked until its file holds a new login."""
        account: Account = member.source
        try:
            fresh = await self.refresher.ensure_fresh(account, force=force)
        except RefreshError as exc:
            expires = account.expires_at
            if not force and expires is not None and expires.timestamp() > time.time():
                if self._refresh_warned.get(member.key) != exc.code:
                    self._refresh_warned[member.key] = exc.code
                    logger.warning("cliproxy: refresh of %s failed (%s); using its current token until it expires", member.label, exc)
                return account
            logger.warning("cliproxy: %s is unusable: %s", member.label, exc)
            if exc.permanent:
                self.pool.park(member)
            else:
                member.cooldown_until["*"] = time.time() + 60
            return None
        self._refresh_warned.pop(member.key, None)
        member.source, member.credential = fresh, fingerprint(fresh.refresh_token)  # our own refresh is not a new login
        return fresh

    # -- true quota: rests lifted by wham/usage or by hand -------------------------------------------
    @property
    def wham_usage_url(self) -> str:
        """`{backend-api root}/wham/usage`: the codex-base-url without its trailing `/codex`."""
        root = self.config.codex_base_url.rstrip("/").removesuffix("/codex")
        return root + "/wham/usage"

    def honour_clears(self) -> None:
        """Lift the rest of a resting member whose state file says `cliproxy rest clear` was run since.
        Only resting members are looked at (one stat each), so this is cheap enough for every request."""
        now = time.time()
        for member in self.pool.members:
            if not isinstance(member.source, Account) or max(member.cooldown_until.values(), default=0) <= now:
                continue
            try:
                path = state_path(self.config.auth_dir, member.key)
                if not path.exists():
                    continue
            except OSError:
                continue
            stamp = str(read_state(self.config.auth_dir, member.key).get("rest_cleared_at") or "")
            if stamp and stamp != self._cleared.get(member.key, ""):
                self._cleared[member.key] = stamp
                self.pool.lift(member)
                logger.info("cliproxy: rest of %s lifted by hand (cliproxy rest clear)", member.label)
                self._write_state(member)

    def quota_facts(self, key: str) -> dict:
        """Plan, reset credits and credits from the member's last wham/usage read here ({} before one)."""
        return self._wham.get(key, {})

    async def probe_quota(self, member: Member) -> dict | None:
        """Re-read the member's quota from wham/usage (None when it cannot be read); kept on the member."""
        if not isinstance(member.source, Account):
            return None
        account = await self._fresh(member)
        if account is None:
            return None
        cred = self._account_credential(member, account)
        try:
            r = await self.http.get(self.wham_usage_url, headers=dict(cred.headers), timeout=15)
            body = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            logger.info("cliproxy: cannot read the quota of %s: %s", member.label, type(exc).__name__)
            return None
        if not isinstance(body, dict):
            logger.info("cliproxy: the quota of %s could not be read (HTTP %s)", member.label, r.status_code)
            return None
        usage = parse_wham_usage(body)
        if usage["quota"]:
            member.quota = usage["quota"]
        self._wham[member.key] = {k: usage[k] for k in ("plan", "reset_credits", "credits")}
        return usage

    async def probe_resting(self) -> None:
        """Re-read wham/usage for members resting on a usage limit, each every `quota-probe-seconds`;
        lift a rest as soon as every window has room (a banked reset was spent, or the window reset early)."""
        now = time.time()
        interval = self.config.quota_probe_seconds
        resting = self.pool.limited(now)
        for key in set(self._probed) - {m.key for m in resting}:
            del self._probed[key]
        for member in resting:
            due = self._probed.setdefault(member.key, now + interval)
            if due > now:
                continue
            self._probed[member.key] = now + interval
            usage = await self.probe_quota(member)
            if usage is not None and room_in(usage["quota"]):
                self.pool.lift(member)
                self._probed.pop(member.key, None)
                logger.warning("cliproxy: %s has quota again (wham/usage: %s); serving again", member.label, usage["summary"])
            self.save_state(member, force=True)

    # -- persisted per-account state (quota, cool-downs) --------------------------------------------
    def save_state(self, member: Member, force: bool = False) -> None:
        """Persist the member's quota and cool-down: at once when forced, else at most every few seconds."""
        if not isinstance(member.source, Account):
            return
        wait = STATE_WRITE_INTERVAL - (time.time() - self._state_written.get(member.key, 0))
        if force or wait <= 0:
            self._write_state(member)
        elif member.key not in self._state_pending:
            self._state_pending.add(member.key)
            asyncio.get_running_loop().call_later(wait, self._write_state, member)

    def _write_state(self, member: Member) -> None:
        self._state_pending.discard(member.key)
        now = time.time()
        self._state_written[member.key] = now
        until = max(member.cooldown_until.values(), default=0)
        state = {
            "quota": member.quota,
            "cooldown_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until)) if until > now else None,
            "refused": member.parked,  # the backend refused even a refreshed token: needs a new login
            "rest_cleared_at": self._cleared.get(member.key) or None,  # the last `cliproxy rest clear` honoured
            **({"wham": self._wham[member.key]} if member.key in self._wham else {}),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }
        try:
            write_state(self.config.auth_dir, member.key, state)
        except OSError as exc:
            logger.warning("cliproxy: cannot save state of %s: %s", member.label, exc)
