"""State shared by the cliproxy addons: the config in force and the account pool (no mitmproxy import).

Addons receive one `Runtime` at construction. Reloads build new objects and swap them in whole,
so a hook never sees a half-applied config.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from auth.pool import Member, Pool

from .config import ApiKeyUpstream, Config

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credential:
    """What a rewritten request carries upstream for one member."""

    member: Member
    url: str  # full URL of the Responses endpoint to call
    headers: tuple[tuple[str, str], ...]  # auth headers (secret: never log)


class Runtime:
    def __init__(self) -> None:
        self.config = Config()
        self.pool = Pool()
        self.refresher = None  # auth.refresh.TokenRefresher, created for the config's issuer
        self.accounts_signature: object = None

    # -- loading ---------------------------------------------------------------------------------
    def apply_config(self, config: Config) -> None:
        issuer_changed = config.oauth_issuer != self.config.oauth_issuer or self.refresher is None
        self.config = config
        self.pool.strategy = config.strategy
        if issuer_changed:
            from auth.refresh import TokenRefresher

            self.refresher = TokenRefresher(config.oauth_issuer)
        self.reload_accounts()

    def reload_accounts(self) -> None:
        from auth.store import load_accounts

        members = []
        for account in load_accounts(self.config.auth_dir):
            if account.disabled:
                continue
            members.append(Member(account.name, account.label, account))
        for n, up in enumerate(self.config.api_key_upstreams):
            members.append(Member(f"api-key:{n}", f"api-key#{n + 1}", up))
        self.pool.replace(members)
        logger.info("cliproxy: %d account(s) in the pool", len(members))

    # -- serving ---------------------------------------------------------------------------------
    async def credential(self, model: str, exclude: set[str] = frozenset()) -> Credential | None:
        """A usable credential for `model`, refreshing an OAuth token first when it is about to expire."""
        for member in self.pool.candidates(model, exclude):
            source = member.source
            if isinstance(source, ApiKeyUpstream):
                headers = (("authorization", f"Bearer {source.api_key}"), *source.headers)
                return Credential(member, source.base_url.rstrip("/") + "/responses", headers)
            account = await self._fresh(member)
            if account is None:
                continue
            headers = [("authorization", f"Bearer {account.access_token}")]
            if account.account_id:
                headers.append(("chatgpt-account-id", account.account_id))
            return Credential(member, self.config.responses_url, tuple(headers))
        return None

    async def _fresh(self, member: Member):
        from auth.refresh import RefreshError

        account = member.source
        try:
            fresh = await self.refresher.ensure_fresh(account)
        except RefreshError as exc:
            expires = account.expires_at
            if not exc.permanent and expires is not None and expires.timestamp() > time.time():
                logger.warning("cliproxy: refresh of %s failed (%s); its current token is still valid", member.label, exc)
                return account
            logger.warning("cliproxy: %s is unusable: %s", member.label, exc)
            member.cooldown_until["*"] = time.time() + (3600 * 24 * 365 if exc.permanent else 60)
            return None
        member.source = fresh
        return fresh
