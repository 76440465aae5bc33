"""State shared by the cliproxy addons: the config in force and the account pool (no mitmproxy import).

Addons receive one `Runtime` at construction. Reloads build new objects and swap them in whole,
so a hook never sees a half-applied config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import certifi
import httpx

from cliproxy.addons.core.config import ApiKeyUpstream, Config
from cliproxy.addons.core.live_catalog import LiveCatalog
from cliproxy.addons.store import pg
from cliproxy.addons.store.accounts import AccountStore, FileAccounts, open_accounts
from cliproxy.auth.pool import Member, Pool
from cliproxy.auth.quota import parse_wham_usage, room_in
from cliproxy.auth.refresh import RefreshError, TokenRefresher
from cliproxy.auth.store import Account, fingerprint

logger = logging.getLogger(__name__)

STATE_WRITE_INTERVAL = 2.0  # seconds between quota-state writes per account
FOLLOW_SECONDS = 0.25  # how often a shared store is polled for other hosts' changes (one cheap query)
STORE_DOWN_REST = 5.0  # seconds a member whose token expired rests while the shared store is unreachable


@dataclass(frozen=True, slots=True)
class Credential:
    """What a rewritten request carries upstream for one member."""

    member: Member
    url: str  # full URL of the Responses endpoint to call
    headers: tuple[tuple[str, str], ...]  # auth headers (secret: never log)
    model: str | None = None  # upstream model name when the member renames it (API-key aliases)


def _store_key(config: Config) -> tuple[str, str]:
    return ("pg", config.store) if config.store else ("files", str(config.auth_dir))


class Runtime:
    def __init__(self) -> None:
        self.config = Config()
        self.pool = Pool()
        self.accounts: AccountStore = FileAccounts(self.config.auth_dir)  # replaced when auth-dir or store changes
        self._store_key = ("files", str(self.config.auth_dir))  # which store `accounts` is
        self.refresher: TokenRefresher = TokenRefresher(self.config.oauth_issuer)  # replaced when the issuer or store changes
        self._accounts_sig: object = None  # a shared store's accounts signature at the last load
        self._state_seq = 0  # the last state change of a shared store seen
        self.store_down = False  # a shared store is unreachable: serving on the tokens in memory
        self._writes: concurrent.futures.ThreadPoolExecutor | None = None  # state writes to a shared store, off the event loop
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
        """Swap in a config. Raises `pg.StoreUnavailable` (nothing swapped) when its store cannot be reached."""
        if _store_key(config) != self._store_key:
            store = open_accounts(config.store, config.auth_dir)
            self.accounts.close()
            self.accounts, self._store_key, self._accounts_sig, self._state_seq, self.store_down = store, _store_key(config), None, 0, False
            self.refresher = store.refresher(config.oauth_issuer)
            if store.shared:
                logger.info("cliproxy: accounts in the shared store %s", store.where)
        if config.oauth_issuer != self.refresher.issuer:
            self.refresher = self.accounts.refresher(config.oauth_issuer)
        self.config = config
        self.pool.strategy = config.strategy
        self.catalog.load_disk()
        self.reload_accounts()

    def reload_accounts(self) -> None:
        """Load the accounts and their saved state (blocking; a shared store's follower loads off the loop)."""
        accounts = self.accounts.load()
        names = [a.name for a in accounts if not a.disabled]
        self.install_accounts(accounts, self.accounts.read_states(names))
        if self.accounts.shared:
            self._accounts_sig = self.accounts.poll(self._state_seq).accounts  # type: ignore[attr-defined]

    def install_accounts(self, accounts: list[Account], states: dict[str, dict]) -> None:
        members = []
        for account in accounts:
            if not account.disabled:
                members.append(Member(account.name, account.label, account, credential=fingerprint(account.refresh_token)))
        for n, up in enumerate(self.config.api_key_upstreams):
            models = frozenset(alias for _, alias in up.models) or None
            members.append(Member(f"api-key:{n}", f"api-key#{n + 1}", up, models, credential=fingerprint(up.api_key)))
        self.pool.replace(members)
        self.catalog.apply()  # the accounts' own model lists, and the catalog they make
        for m in self.pool.members:
            if isinstance(m.source, Account):
                saved = states.get(m.key, {})
                m.quota = m.quota or saved.get("quota", {})
                self._cleared.setdefault(m.key, str(saved.get("rest_cleared_at") or ""))
                if self.accounts.shared:
                    self._adopt_rests(m, saved)
        logger.info("cliproxy: %d account(s) in the pool", len(members))
        if not members:
            logger.warning("cliproxy: no accounts in %s yet: run `cliproxy login` (picked up without a restart)", self.accounts.where)

    # -- a shared store: following other hosts ------------------------------------------------------
    async def follow(self) -> None:
        """Poll a shared store for accounts and rests other hosts changed (new logins, refreshed
        tokens, rests, `rest clear`), every FOLLOW_SECONDS; survive the store going away and coming back."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            store = self.accounts
            if not store.shared:
                continue
            try:
                await self.follow_once(store)
            except pg.StoreUnavailable as exc:
                if not self.store_down and store is self.accounts:
                    self.store_down = True
                    logger.warning(
                        "cliproxy: the account store is unreachable (%s); serving on the tokens in memory, refreshes wait until it is back",
                        exc,
                    )
            except Exception:  # the follower must survive anything
                logger.exception("cliproxy: following the account store failed")

    async def follow_once(self, store: AccountStore) -> None:
        changes = await asyncio.to_thread(store.poll, self._state_seq)  # type: ignore[attr-defined]
        if store is not self.accounts:
            return
        recovered, self.store_down = self.store_down, False
        if recovered:
            logger.warning("cliproxy: the account store is reachable again")
        if recovered or changes.accounts != self._accounts_sig:
            accounts = await asyncio.to_thread(store.load)
            states = await asyncio.to_thread(store.read_states, [a.name for a in accounts])
            if store is not self.accounts:
                return
            self._accounts_sig = changes.accounts
            self.install_accounts(accounts, states)
        self._state_seq = changes.seq
        for name, state in changes.states:
            member = self.pool.get(name)
            if member is not None and isinstance(member.source, Account):
                self._adopt_rests(member, state)

    def _adopt_rests(self, member: Member, state: dict) -> None:
        """Another host's view: its `rest clear` lifts the rest here too; its rests hold here as well."""
        stamp = str(state.get("rest_cleared_at") or "")
        if stamp and stamp > self._cleared.get(member.key, ""):  # stamps sort by time
            self._cleared[member.key] = stamp
            if self.pool.lift(member):
                logger.info("cliproxy: rest of %s lifted (cliproxy rest clear, or another host saw quota again)", member.label)
        now = time.time()
        rests = state.get("rests")
        for key, until in (rests if isinstance(rests, dict) else {}).items():
            if isinstance(until, int | float) and not isinstance(until, bool) and until > now:
                member.cooldown_until[key] = max(member.cooldown_until.get(key, 0), float(until))
                if key in (state.get("limited") or ()):
                    member.limited.add(key)
        if isinstance(state.get("quota"), dict) and state["quota"]:
            member.quota = state["quota"]

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
        if self._writes is not None:
            self._writes.shutdown(wait=False)
            self._writes = None
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
            quiet = exc.code == "store_unavailable"  # the follower logs the outage once
            if not force and expires is not None and expires.timestamp() > time.time():
                if self._refresh_warned.get(member.key) != exc.code and not quiet:
                    self._refresh_warned[member.key] = exc.code
                    logger.warning("cliproxy: refresh of %s failed (%s); using its current token until it expires", member.label, exc)
                return account
            if not quiet:
                logger.warning("cliproxy: %s is unusable: %s", member.label, exc)
            if exc.permanent:
                self.pool.park(member)
            else:
                member.cooldown_until["*"] = time.time() + (STORE_DOWN_REST if quiet else 60)
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
        store = self.accounts
        if not isinstance(store, FileAccounts):
            return  # a shared store's follower brings clears
        now = time.time()
        for member in self.pool.members:
            if not isinstance(member.source, Account) or max(member.cooldown_until.values(), default=0) <= now:
                continue
            try:
                if not store.has_state(member.key):
                    continue
            except OSError:
                continue
            stamp = str(store.read_state(member.key).get("rest_cleared_at") or "")
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
                if self.accounts.shared:  # a clear, so that the lift reaches the store and the other hosts
                    self._cleared[member.key] = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}.{time.time_ns() % 10**9:09d}"
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
        state: dict[str, Any] = {
            "quota": member.quota,
            "cooldown_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until)) if until > now else None,
            "refused": member.parked,  # the backend refused even a refreshed token: needs a new login
            "rest_cleared_at": self._cleared.get(member.key) or None,  # the last `cliproxy rest clear` honoured
            **({"wham": self._wham[member.key]} if member.key in self._wham else {}),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }
        store = self.accounts
        if not store.shared:
            try:
                store.write_state(member.key, state)
            except OSError as exc:
                logger.warning("cliproxy: cannot save state of %s: %s", member.label, exc)
            return
        state["rests"] = {k: v for k, v in member.cooldown_until.items() if v > now}  # what the other hosts honour
        state["limited"] = sorted(member.limited)

        def write() -> None:
            try:
                store.write_state(member.key, state)
            except pg.StoreUnavailable as exc:  # the follower logs the outage once
                logger.debug("cliproxy: state of %s not saved: %s", member.label, exc)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            write()
            return
        if self._writes is None:
            self._writes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cliproxy-state")
        loop.run_in_executor(self._writes, write)
