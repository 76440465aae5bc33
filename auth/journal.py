"""Refresh journal: the issuer's raw token answer, made durable before anything else is done with it.

Refresh tokens are single-use. Once the issuer has answered a refresh, the token that was sent is
dead and the only copy of its successor is in that answer; a crash before the successor is on disk
loses the login. So, under the account's lock, the answer's bytes go unparsed into a journal beside
the account (`.<account file>.refresh-journal`, mode 0600, fsynced with its directory), then the
account file is rewritten atomically, then the journal is removed. Whoever next takes the account's
lock (a refresh, the proxy's start or reload, any `cliproxy` command listing accounts) replays a
journal whose spent refresh token is still the account's, and removes a journal that is stale (its
answer is already applied, the account was replaced by a new login) or unreadable. Replay is
idempotent: a crash at any point of it leaves either the journal or the applied tokens, or both.

The journal starts with one header line, `cliproxy-refresh-journal 1 <fingerprint> <unix time>`,
naming the refresh token that was spent (a fingerprint, never the token) and when the answer came;
the rest is the answer exactly as received. The name does not end in `.json`, so neither
`load_accounts` nor the proxy's directory watcher takes it for an account.

What no client can cover: the issuer rotates the token when it processes the request, and its
answer then has to cross the network. If the process doing the exchange dies after the request left
and before the whole answer arrived, the rotation is lost whatever it does (a server may finish a
request whose client has gone), and the next refresh gets `refresh_token_reused`. cliproxy narrows
this to the exchange process alone: it is a child (`cliproxy.auth.exchange`) that a crash or `kill -9` of the
proxy does not take down, so only its own death, or the machine's, inside that round trip loses a
login. Once the answer is read, the window is one `write` of it (durable against a killed process as
soon as it returns, and against power loss after the fsyncs).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cliproxy.auth.claims import identity_from_tokens, token_expiry
from cliproxy.auth.exchange import MAGIC, SUFFIX, journal_path, write_journal  # noqa: F401 (the child process writes journals)
from cliproxy.auth.locking import try_account_lock
from cliproxy.auth.oauth import TokenResponse
from cliproxy.auth.store import STATUS_KEY, AccountFileError, _fsync_dir, fingerprint, read_json, update_account_file
from cliproxy.auth.timeutil import format_time

logger = logging.getLogger(__name__)


def journal_header(spent_refresh_token: str) -> bytes:
    """The header line, computed before the request so that nothing but the write follows the answer."""
    return MAGIC + fingerprint(spent_refresh_token).encode() + b" "


def remove_journal(account_path: Path) -> None:
    """Drop the journal once its answer is in the account file (not fsynced: a journal that comes back
    after a power loss is stale and removed by the next replay)."""
    journal_path(account_path).unlink(missing_ok=True)


def token_changes(answer: Any, at: datetime) -> dict[str, object]:
    """The account-file keys a token answer sets. Fields the answer lacks keep their old values
    (an answer without `id_token` must not blank the email). ValueError when it is not a JSON object."""
    tokens = TokenResponse.from_json(answer)
    changes: dict[str, object] = {"type": "codex", "last_refresh": format_time(at)}
    if tokens.refresh_token:
        changes["refresh_token"] = tokens.refresh_token
    if tokens.access_token:
        changes["access_token"] = tokens.access_token
        expires = token_expiry(tokens.access_token)
        if expires is None and tokens.expires_in is not None:
            expires = at + timedelta(seconds=tokens.expires_in)
        if expires is not None:
            changes["expired"] = format_time(expires)
    if tokens.id_token:
        changes["id_token"] = tokens.id_token
        ident = identity_from_tokens(tokens.id_token, tokens.access_token)
        if ident.email:
            changes["email"] = ident.email
        if ident.account_id:
            changes["account_id"] = ident.account_id
    return changes


@dataclass(frozen=True, slots=True)
class _Entry:
    spent: str  # fingerprint of the refresh token the answer replaced
    at: datetime  # when the answer arrived
    answer: dict[str, Any]


def _parse(raw: bytes) -> _Entry | None:
    """The journal's content, or None when it is torn or not a token answer."""
    head, sep, body = raw.partition(b"\n")
    if not sep or not head.startswith(MAGIC):
        return None
    parts = head[len(MAGIC) :].split(b" ")
    try:
        spent, stamp = parts[0].decode("ascii"), int(parts[1])
        answer = json.loads(body)
    except (IndexError, ValueError):
        return None
    if len(parts) != 2 or not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        return None
    return _Entry(spent, datetime.fromtimestamp(stamp, UTC), answer)


def replay_journal(account_path: Path) -> str | None:
    """Apply or drop the journal beside `account_path`. The caller holds the account's lock.

    Returns None (no journal), "replayed", "stale", "torn" or "orphan" (the account file is gone).
    Raises OSError / AccountFileError when the account cannot be read or written; the journal is
    then kept, and the caller must not refresh (it would send the spent refresh token)."""
    path = journal_path(account_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    entry = _parse(raw)
    if entry is None:
        outcome = "torn"
        logger.warning("%s: dropping an unreadable refresh journal; if this login fails, sign in again", account_path.name)
    else:
        try:
            data = read_json(account_path)
        except AccountFileError:
            if account_path.exists():
                raise
            data = None
        if data is None:
            outcome = "orphan"
        elif isinstance(data.get("refresh_token"), str) and fingerprint(data["refresh_token"].strip()) == entry.spent:
            update_account_file(account_path, token_changes(entry.answer, entry.at), remove=(STATUS_KEY,))
            outcome = "replayed"
            logger.info("%s: applied the tokens of a refresh interrupted before they were saved", account_path.name)
        else:
            outcome = "stale"  # already applied, or the file now holds another login
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return outcome


def recover_journals(account_paths: list[Path]) -> None:
    """Replay journals beside these accounts, skipping any account whose lock is held (its holder is
    alive, and replays or completes the journal itself). Problems are logged, never raised."""
    for account_path in account_paths:
        if not journal_path(account_path).exists():
            continue
        try:
            with try_account_lock(account_path) as locked:
                if locked:
                    replay_journal(account_path)
        except (OSError, AccountFileError) as exc:
            logger.warning("%s: cannot apply its refresh journal yet: %s", account_path.name, exc)
