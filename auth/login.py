"""Signing in: the browser flow end to end, and saving a fresh login as an account file."""

from __future__ import annotations

import logging
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cliproxy.auth.callback import CallbackServer
from cliproxy.auth.claims import Identity, identity_from_tokens, token_expiry
from cliproxy.auth.constants import CALLBACK_PORTS, DEFAULT_ISSUER
from cliproxy.auth.locking import account_lock_sync
from cliproxy.auth.oauth import LoginError, TokenResponse, build_authorize_url, exchange_code, generate_pkce, generate_state
from cliproxy.auth.store import STATUS_KEY, Account, AccountFileError, choose_account_path, ensure_dir, read_json, write_account_file
from cliproxy.auth.timeutil import format_time, now

logger = logging.getLogger(__name__)

LOGIN_TIMEOUT = 300.0  # seconds to wait for the browser, as CLIProxyAPI
# Keys a new login replaces; every other key of an existing file (prefix, note, weight…) is kept.
LOGIN_KEYS = (
    "type",
    "email",
    "account_id",
    "id_token",
    "access_token",
    "refresh_token",
    "last_refresh",
    "expired",
    "disabled",
    "expires_in",
    "token_type",
    STATUS_KEY,
)


@dataclass(frozen=True, slots=True)
class LoginResult:
    account: Account
    replaced: bool  # an existing file of the same account was updated

    @property
    def path(self) -> Path:
        return self.account.path


def account_record(
    tokens: TokenResponse, identity: Identity, *, at: datetime | None = None, last_refresh: datetime | None = None
) -> dict[str, Any]:
    """The account-file fields for a fresh set of tokens."""
    at = at or now()
    expires = token_expiry(tokens.access_token)
    if expires is None and tokens.expires_in is not None:
        expires = at + timedelta(seconds=tokens.expires_in)
    record: dict[str, Any] = {
        "type": "codex",
        "email": identity.email,
        "account_id": identity.account_id,
        "id_token": tokens.id_token,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "last_refresh": format_time(last_refresh or at),
        "disabled": False,
    }
    if expires is not None:
        record["expired"] = format_time(expires)
    return record


def save_tokens(
    auth_dir: Path, tokens: TokenResponse, *, last_refresh: datetime | None = None, account_id: str | None = None
) -> LoginResult:
    """Write a login to the auth dir (file named after the account, see `choose_account_path`).
    A re-login of the same account updates its file and keeps the user's extra keys."""
    identity = identity_from_tokens(tokens.id_token, tokens.access_token)
    if account_id:
        identity = Identity(identity.email, account_id, identity.plan, identity.user_id)
    if not identity.email or not identity.account_id:
        raise LoginError("missing_account_information", "the tokens carry no email or ChatGPT account id, so the login cannot be saved")
    auth_dir = Path(auth_dir).expanduser()
    ensure_dir(auth_dir)
    path = choose_account_path(auth_dir, identity)
    with account_lock_sync(path):
        try:
            existing = read_json(path)
        except AccountFileError:
            existing = None
        data = {k: v for k, v in (existing or {}).items() if k not in LOGIN_KEYS}
        data.update(account_record(tokens, identity, last_refresh=last_refresh))
        write_account_file(path, data)
    logger.info("saved login of %s to %s", identity.email, path)
    return LoginResult(Account(path, data), existing is not None)


def browser_login(
    auth_dir: Path,
    issuer: str = DEFAULT_ISSUER,
    *,
    open_browser: Callable[[str], Any] | None = webbrowser.open,
    on_url: Callable[[str, bool], None] | None = None,
    ports: Sequence[int] = CALLBACK_PORTS,
    host: str = "127.0.0.1",
    timeout: float = LOGIN_TIMEOUT,
    client: httpx.Client | None = None,
) -> LoginResult:
    """Authorization code + PKCE with a loopback callback; saves and returns the account.

    `open_browser(url)` is called once the callback server listens (None: don't open one);
    `on_url(url, opened)` lets the caller print the URL for manual use.
    """
    pkce, state = generate_pkce(), generate_state()
    redirect: list[str] = []

    def redeem(code: str) -> LoginResult:
        tokens = exchange_code(issuer, code, redirect[0], pkce.verifier, client=client)
        return save_tokens(auth_dir, tokens)

    with CallbackServer(state, redeem, host=host, ports=ports) as server:
        redirect.append(server.redirect_uri)
        url = build_authorize_url(issuer, state, pkce.challenge, server.redirect_uri)
        opened = False
        if open_browser is not None:
            try:
                opened = bool(open_browser(url))
            except Exception as exc:  # a missing or broken browser is not fatal: the URL is printed
                logger.debug("opening the browser failed: %s", exc)
        if on_url is not None:
            on_url(url, opened)
        return server.wait(timeout)
