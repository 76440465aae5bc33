"""Keeping access tokens fresh, safely, with rotating refresh tokens (each can be used once; OAuth 2.0 refresh-token rotation, RFC 6749 §6 and the OAuth 2.0 Security BCP).

Refresh tokens are single-use: a refresh returns a new one and the old one dies; sending a dead
one again gets `refresh_token_reused` and the login is gone. So:

- at most one refresh per account at a time: an `asyncio.Lock` per account file inside a process
  (concurrent callers wait for the one refresh) and an `flock` on `.<file>.lock` across processes;
- under the lock the file is read again; if another process or request already refreshed (the
  tokens differ from what the caller had), its tokens are adopted without a network call;
- the exchange with the issuer runs in a child process that holds the lock too and outlives a crash
  of the proxy (`cliproxy.auth.exchange`); it puts the issuer's answer in a fsynced journal beside the account
  before anything else, then the rotated tokens are written (atomically) before the new access token
  is handed out; a journal left by a crash is replayed under the lock before any refresh
  (`auth.journal`, which also describes the one window no client can close);
- a retry re-sends a refresh token only when the previous attempt surely did not reach the issuer
  (connection failures) or the issuer answered with an error (5xx/429/408);
- terminal answers (`invalid_grant`, `refresh_token_reused|expired|invalidated`, any 401) mark the
  file `cliproxy_status: needs-login` and fail fast afterwards until the file changes;
- transient failures (network, 5xx) back off (`retry_after`) so a dead endpoint is not hammered,
  while the old access token keeps being used until it really expires.

Refresh timing: a token is refreshed when less than `refresh_ahead` (default 30 minutes) of its
lifetime is left. Codex access tokens live for days; 30 minutes leaves time for many retries if the
issuer has a bad moment, while rotating the refresh token as rarely as possible (every rotation is a
chance to collide with another tool using the same login). Short-lived tokens (lifetime under twice
the margin, e.g. in tests) are refreshed at half their lifetime instead, so a fresh token is never
immediately "due" again. Without a readable expiry, a token is refreshed when `last_refresh` is older
than `UNKNOWN_EXPIRY_MAX_AGE`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from cliproxy.auth.constants import CLIENT_ID, DEFAULT_ISSUER, HTTP_TIMEOUT, REFRESH_SCOPE, TOKEN_PATH, endpoint
from cliproxy.auth.http import sync_client
from cliproxy.auth.journal import journal_header, journal_path, remove_journal, replay_journal, token_changes, write_journal
from cliproxy.auth.locking import LockTimeout, account_lock
from cliproxy.auth.oauth import error_fields, response_json
from cliproxy.auth.store import STATUS_KEY, Account, AccountFileError, fingerprint, load_account, status_record, update_account_file
from cliproxy.auth.timeutil import format_time, now

logger = logging.getLogger(__name__)

REFRESH_AHEAD = timedelta(minutes=30)
UNKNOWN_EXPIRY_MAX_AGE = timedelta(days=3)
TERMINAL_CODES = ("refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated", "invalid_grant")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# The Codex CLI's wording for permanent failures (openai/codex, codex-rs/login), plus what to do in cliproxy.
_PERMANENT_TEXT = {
    "refresh_token_expired": "its refresh token has expired",
    "refresh_token_reused": "its refresh token was already used (another program refreshed this login)",
    "refresh_token_invalidated": "its refresh token was revoked",
}


class RefreshError(Exception):
    """A refresh that did not work. `permanent`: the login is dead, run `cliproxy login` again.
    `code`: `refresh_token_reused`, `invalid_grant`, `unauthorized`, `network`, `http_503`, …
    The message names the account by its label and never contains a token."""

    def __init__(self, message: str, *, code: str, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.status = status


@dataclass(slots=True)
class _Backoff:
    until: float  # time.monotonic()
    error: RefreshError


ClientFactory = Callable[[], httpx.Client]  # used from a worker thread (see `_exchange`)
_PYTHON = sys.executable if "python" in Path(sys.executable).name else None  # not in frozen builds


class TokenRefresher:
    """Refreshes account files against one issuer. One instance per process is enough; it is cheap,
    holds no connections between refreshes, and may be used from several event loops in turn."""

    def __init__(
        self,
        issuer: str = DEFAULT_ISSUER,
        *,
        refresh_ahead: timedelta = REFRESH_AHEAD,
        attempts: int = 3,
        backoff: float = 1.0,
        retry_after: float = 30.0,
        lock_timeout: float = 120.0,
        timeout: float = HTTP_TIMEOUT,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.issuer = issuer
        self.refresh_ahead = refresh_ahead
        self.attempts = max(1, attempts)
        self.backoff = backoff  # sleep before retry n is backoff * 2**(n-1): 1 s, 2 s
        self.retry_after = retry_after  # seconds to rest after a transient failure
        self.lock_timeout = lock_timeout
        self.client_factory = client_factory  # None: each exchange runs in a child process (`cliproxy.auth.exchange`)
        self.timeout = timeout
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
        self._dead: dict[tuple[str, str], RefreshError] = {}  # (file, refresh-token fingerprint) → terminal error
        self._resting: dict[tuple[str, str], _Backoff] = {}

    # -- policy ----------------------------------------------------------------------------------
    def needs_refresh(self, account: Account, at: datetime | None = None) -> bool:
        """True when the access token is missing, expired or within the refresh-ahead margin."""
        at = at or now()
        if not account.access_token:
            return True
        expires = account.expires_at
        if expires is None:
            last = account.last_refresh
            return last is None or at - last >= UNKNOWN_EXPIRY_MAX_AGE
        margin = self.refresh_ahead
        issued = account.issued_at
        if issued is not None and expires > issued:
            margin = min(margin, (expires - issued) / 2)
        return expires - at <= margin

    # -- the entry point -------------------------------------------------------------------------
    async def ensure_fresh(self, account: Account, *, force: bool = False) -> Account:
        """An Account whose access token is usable, refreshing it when due.

        `force=True` means "this access token was just refused (401)": unless the file already holds a
        different access token (someone refreshed meanwhile, adopted without a network call), refresh now.
        Raises RefreshError; with `permanent=False` the caller may keep using the old token until
        `account.expires_at`.
        """
        if not force and not self.needs_refresh(account):
            return account
        async with self._local_lock(account.path):
            current = self._reload(account)
            if self._adoptable(account, current, force):
                return current
            rested = self._known_failure(current, force)
            if rested is not None:
                return rested
            try:
                async with account_lock(current.path, self.lock_timeout) as lock_fd:
                    self._replay(account)
                    latest = self._reload(account)
                    if self._adoptable(account, latest, force):
                        return latest
                    if latest.refresh_token != current.refresh_token:
                        rested = self._known_failure(latest, force)
                        if rested is not None:
                            return rested
                    return await self._refresh(latest, lock_fd)
            except LockTimeout:
                raise RefreshError(
                    f"{account.label}: another process has been refreshing this account for over {self.lock_timeout:.0f}s",
                    code="lock_timeout",
                    permanent=False,
                ) from None

    # -- steps -----------------------------------------------------------------------------------
    def _local_lock(self, path: Path) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(os.path.abspath(path), asyncio.Lock())

    def _reload(self, seen: Account) -> Account:
        try:
            return load_account(seen.path)
        except AccountFileError as exc:
            gone = not seen.path.exists()
            raise RefreshError(
                f"{seen.label}: account file {'was removed' if gone else 'is unusable'} ({exc})",
                code="account_removed" if gone else "account_unreadable",
                permanent=True,
            ) from None

    def _replay(self, seen: Account) -> None:
        """Complete a refresh that a crash interrupted after the issuer answered (under the lock)."""
        try:
            replay_journal(seen.path)
        except (OSError, AccountFileError) as exc:
            raise RefreshError(
                f"{seen.label}: a refresh journal cannot be applied yet ({exc}); not refreshing, "
                "which would spend the old refresh token again",
                code="journal_pending",
                permanent=False,
            ) from None

    def _adoptable(self, seen: Account, current: Account, force: bool) -> bool:
        """Use the file's tokens as they are? Yes when they changed since the caller looked (someone else
        refreshed or logged in) and are not due themselves, or when nothing is due at all."""
        if current.access_token != seen.access_token or current.refresh_token != seen.refresh_token:
            if current.access_token != seen.access_token and not self.needs_refresh(current):
                logger.debug("%s: adopting tokens refreshed elsewhere", current.label)
                return True
            return False
        return not force and not self.needs_refresh(current)

    def _key(self, account: Account) -> tuple[str, str]:
        return os.path.abspath(account.path), fingerprint(account.refresh_token)

    def _known_failure(self, account: Account, force: bool) -> Account | None:
        """Fail fast on a credential already known to be dead; during the rest after a transient
        failure, hand back the still-valid old token (or re-raise when it has expired or was refused)."""
        key = self._key(account)
        if key in self._dead:
            raise self._copy(self._dead[key])
        if account.needs_login:
            status = account.status
            detail = status.message or "needs a new login; run `cliproxy login` to sign in again"
            error = RefreshError(f"{account.label}: {detail}", code=status.reason or "needs_login", permanent=True)
            self._dead[key] = error
            raise self._copy(error)
        resting = self._resting.get(key)
        if resting is not None:
            if time.monotonic() < resting.until:
                if not force and not account.expired():
                    return account
                raise self._copy(resting.error)
            del self._resting[key]
        return None

    @staticmethod
    def _copy(error: RefreshError) -> RefreshError:
        return RefreshError(str(error), code=error.code, permanent=error.permanent, status=error.status)

    async def _refresh(self, account: Account, lock_fd: int | None = None) -> Account:
        """One refresh (with retries) under both locks; persists the result."""
        label = account.label
        if not account.refresh_token:
            raise self._terminal(
                account, "no_refresh_token", "the account file has no refresh token; run `cliproxy login` to sign in again", None
            )
        url = endpoint(self.issuer, TOKEN_PATH)
        form = {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": account.refresh_token, "scope": REFRESH_SCOPE}
        header = journal_header(account.refresh_token)
        error: RefreshError | None = None
        factory = self.client_factory or (None if _PYTHON else lambda: sync_client(self.timeout))
        with factory() if factory else contextlib.nullcontext() as client:
            for attempt in range(self.attempts):
                if attempt:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    response, journaled = await self._exchange(client, url, form, header, account, lock_fd)
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    # the request never reached the issuer: safe to send the same refresh token again
                    error = RefreshError(f"{label}: cannot reach {url} ({exc.__class__.__name__}: {exc})", code="network", permanent=False)
                    continue
                except httpx.HTTPError as exc:
                    # it may have reached the issuer (and rotated the token): do not resend it now
                    error = RefreshError(
                        f"{label}: no complete answer from {url} ({exc.__class__.__name__}: {exc})", code="network", permanent=False
                    )
                    break
                if response.status_code == 200:
                    return self._persist(account, response, journaled)
                error = self._classify(account, response)
                if error.permanent:
                    raise self._terminal(account, error.code, str(error), response.status_code)
                if response.status_code not in RETRY_STATUSES:
                    break
        assert error is not None
        logger.info("%s", error)
        self._resting[self._key(account)] = _Backoff(time.monotonic() + self.retry_after, error)
        raise self._copy(error)

    async def _exchange(
        self, client: httpx.Client | None, url: str, form: dict[str, str], header: bytes, account: Account, lock_fd: int | None
    ) -> tuple[httpx.Response, bool]:
        """POST the refresh and journal a 200 answer the moment it has been read, away from the event loop.

        By default a child process does both (`cliproxy.auth.exchange`, which says why); with a `client_factory`
        (tests) a worker thread does. Everything between the issuer's answer and the journal write is a
        window in which a crash loses the login, and the proxy's loop may be busy with many flows for a
        while. The lock stays held until the exchange is done, even when the caller is cancelled: a
        refresher taking over meanwhile would send the token in flight again.
        Returns the response and whether the journal was written; raises httpx errors."""

        def in_thread() -> tuple[httpx.Response, bool]:
            assert client is not None  # chosen only with a client
            response = client.post(url, data=form, headers={"Accept": "application/json"})
            if response.status_code != 200:
                return response, False
            try:  # the old refresh token is spent: nothing but this write comes first
                write_journal(account.path, header, response.content)
            except OSError as exc:
                logger.error("%s: cannot write the refresh journal (%s)", account.label, exc)
                return response, False
            return response, True

        def in_child() -> tuple[httpx.Response, bool]:
            assert _PYTHON is not None  # chosen only when there is an interpreter to start
            job = json.dumps(
                {
                    "url": url,
                    "form": form,
                    "header": header.decode("latin-1"),
                    "account": os.path.abspath(account.path),
                    "timeout": self.timeout,
                }
            ).encode()
            try:
                # the same interpreter and environment find the same `cliproxy`; cwd: `-m` looks in the current
                # directory first, which must not offer another `cliproxy`
                proc = subprocess.run(
                    [_PYTHON, "-m", "cliproxy.auth.exchange"],
                    input=job,
                    capture_output=True,
                    cwd=os.sep,
                    pass_fds=() if lock_fd is None else (lock_fd,),
                    start_new_session=True,
                    timeout=2 * self.timeout + 30,
                )
            except subprocess.TimeoutExpired:
                raise httpx.ReadTimeout("the refresh helper process did not finish") from None
            except OSError as exc:  # nothing was sent
                raise httpx.ConnectError(f"cannot start the refresh helper process ({exc})") from None
            try:
                out = json.loads(proc.stdout)
            except ValueError:
                last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise httpx.RemoteProtocolError(
                    f"the refresh helper process failed (exit status {proc.returncode}): {_redact(last[0], account)}"
                ) from None
            if "error" in out:
                raise (httpx.ConnectError if out["error"] == "connect" else httpx.ReadError)(out["message"])
            if out.get("journal_error"):
                logger.error("%s: cannot write the refresh journal (%s)", account.label, out["journal_error"])
            response = httpx.Response(out["status"], content=base64.b64decode(out["body"]), request=httpx.Request("POST", url))
            return response, bool(out["journaled"])

        done = asyncio.ensure_future(asyncio.to_thread(in_child if client is None else in_thread))
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            while not done.done():
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    pass
            raise

    def _classify(self, account: Account, response: httpx.Response) -> RefreshError:
        status, text = response.status_code, response.text
        code, desc = error_fields(response_json(response))
        terminal = next((c for c in TERMINAL_CODES if c in text), None)
        if terminal == "invalid_grant":  # prefer the specific refresh_token_* code when both appear
            terminal = next((c for c in TERMINAL_CODES[:3] if c in text), terminal)
        if terminal or status == 401:
            reason = terminal or "unauthorized"
            why = _PERMANENT_TEXT.get(reason, f"the issuer refused its refresh token (HTTP {status} {reason})")
            return RefreshError(
                f"cannot refresh: {why}. Run `cliproxy login` to sign in again.", code=reason, permanent=True, status=status
            )
        detail = _redact(desc or code, account)
        return RefreshError(
            f"{account.label}: token refresh failed: HTTP {status}" + (f" ({detail})" if detail else ""),
            code=code or f"http_{status}",
            permanent=False,
            status=status,
        )

    def _terminal(self, account: Account, reason: str, detail: str, status: int | None) -> RefreshError:
        """Record a dead login in the file and in memory; returns the error to raise."""
        error = RefreshError(f"{account.label}: {detail}", code=reason, permanent=True, status=status)
        self._dead[self._key(account)] = error
        try:
            update_account_file(account.path, {STATUS_KEY: status_record(reason, detail, account.refresh_token)})
        except (OSError, AccountFileError) as exc:
            logger.warning("%s: cannot record the needs-login state: %s", account.label, exc)
        logger.info("%s", error)
        return self._copy(error)

    def _persist(self, account: Account, response: httpx.Response, journaled: bool) -> Account:
        """Write the refreshed tokens (new refresh token first of all), drop the journal and return the
        new snapshot."""
        at = now()
        try:
            changes = token_changes(response_json(response), at)
        except ValueError:
            changes = {"type": "codex", "last_refresh": format_time(at)}
        try:
            fresh = update_account_file(account.path, changes, remove=(STATUS_KEY,))
        except (OSError, AccountFileError) as exc:
            if journaled:
                message = (
                    f"{account.label}: refreshed, but the new tokens could not be saved to {account.path} ({exc}); "
                    f"they are kept in {journal_path(account.path).name} and applied once the file can be written."
                )
            else:
                message = (
                    f"{account.label}: refreshed, but the new tokens could not be saved to {account.path} ({exc}); "
                    "the old refresh token is no longer valid. Free the disk / fix permissions and run `cliproxy login`."
                )
            logger.error("%s", message)
            raise RefreshError(message, code="persist_failed", permanent=not journaled) from None
        remove_journal(account.path)
        if "access_token" not in changes:
            raise RefreshError(f"{account.label}: the token endpoint's answer has no access_token", code="bad_response", permanent=False)
        logger.info(
            "%s: access token refreshed (valid until %s)", fresh.label, format_time(fresh.expires_at) if fresh.expires_at else "unknown"
        )
        return fresh


def _redact(text: str, account: Account) -> str:
    """Server text, shortened, with any of the account's tokens blanked out (servers may echo input)."""
    for secret in (account.refresh_token, account.access_token, account.id_token):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:200]


def refresh_sync(
    account: Account, *, force: bool = False, refresher: TokenRefresher | None = None, issuer: str = DEFAULT_ISSUER
) -> Account:
    """Blocking `ensure_fresh` for command-line use (runs its own event loop)."""
    return asyncio.run((refresher or TokenRefresher(issuer)).ensure_fresh(account, force=force))
