"""Account files in the auth dir: reading, naming and atomic writing (one JSON file per account, as CLIProxyAPI keeps them).

One JSON object per account, compatible with CLIProxyAPI's `codex` files:
`type`, `email`, `account_id`, `id_token`, `access_token`, `refresh_token`, `last_refresh`,
`expired`; any other key (`disabled`, `prefix`, …) is preserved on rewrite. cliproxy adds
`cliproxy_status` when an account needs a new login (see `Status`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from cliproxy.auth.claims import Identity, decode_claims, identity_from_claims, token_expiry, token_issued_at
from cliproxy.auth.timeutil import format_time, now, parse_time

logger = logging.getLogger(__name__)

STATUS_KEY = "cliproxy_status"
TOKEN_KEYS = ("access_token", "refresh_token", "id_token")
EXPIRY_KEYS = ("expired", "expire", "expires_at", "expiresAt", "expiry", "expires")
LAST_REFRESH_KEYS = ("last_refresh", "lastRefresh", "last_refreshed_at", "lastRefreshedAt")


class AccountFileError(Exception):
    """An account file is missing, unreadable or not an account. The message names the file."""


def mask(token: str | None) -> str:
    """A display form of a secret: at most its first 4 characters, then `…`."""
    if not token:
        return "-"
    return token[:4] + "…" if len(token) > 8 else "…"


def fingerprint(token: str | None) -> str:
    """A short, non-reversible id of a secret (16 hex chars of SHA-256), to tell credentials apart."""
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Status:
    """What cliproxy last learnt about an account (`cliproxy_status` in the file)."""

    state: str = "ok"  # "ok" | "needs-login"
    reason: str | None = None  # e.g. "refresh_token_reused"
    message: str | None = None  # human text, never a token
    at: datetime | None = None

    @property
    def needs_login(self) -> bool:
        return self.state == "needs-login"


def status_record(reason: str, message: str, refresh_token: str | None) -> dict[str, Any]:
    """The `cliproxy_status` value for an account that needs a new login."""
    return {
        "state": "needs-login",
        "reason": reason,
        "message": message,
        "at": format_time(now()),
        "credential": fingerprint(refresh_token),
    }


@dataclass(frozen=True, eq=False)
class Account:
    """A read-only snapshot of one account file. `data` is the raw JSON object; do not mutate it."""

    path: Path
    data: dict[str, Any]

    def __repr__(self) -> str:  # never show tokens
        return f"Account({self.name!r}, {self.label!r})"

    # -- raw fields ------------------------------------------------------------------------------
    def _str(self, key: str) -> str:
        value = self.data.get(key)
        return value.strip() if isinstance(value, str) else ""

    @property
    def name(self) -> str:
        """The file name, the account's stable id (e.g. `codex-me@example.com-plus.json`)."""
        return self.path.name

    @property
    def access_token(self) -> str:
        return self._str("access_token")

    @property
    def refresh_token(self) -> str:
        return self._str("refresh_token")

    @property
    def id_token(self) -> str:
        return self._str("id_token")

    @cached_property
    def _identity(self) -> Identity:
        ident = identity_from_claims(decode_claims(self.id_token))
        if ident.plan and ident.account_id:
            return ident
        other = identity_from_claims(decode_claims(self.access_token))
        return Identity(
            ident.email or other.email, ident.account_id or other.account_id, ident.plan or other.plan, ident.user_id or other.user_id
        )

    @property
    def email(self) -> str:
        return self._str("email") or self._identity.email

    @property
    def account_id(self) -> str:
        """ChatGPT account (workspace) id, sent upstream as `ChatGPT-Account-Id`."""
        return self._str("account_id") or self._identity.account_id

    @property
    def plan(self) -> str:
        return self._identity.plan or self._str("plan_type")

    @property
    def identity(self) -> Identity:
        return Identity(self.email, self.account_id, self.plan, self._identity.user_id)

    @property
    def label(self) -> str:
        """Short, safe display name: the email, else `acct-<6 chars of the account id>`, else the file stem."""
        if self.email:
            return self.email
        if self.account_id:
            return f"acct-{self.account_id[:6]}"
        return self.path.stem

    # -- times -----------------------------------------------------------------------------------
    @cached_property
    def expires_at(self) -> datetime | None:
        """Access-token expiry: the JWT `exp` when readable, else the file's `expired` (or an alias)."""
        exp = token_expiry(self.access_token)
        if exp is not None:
            return exp
        return next((t for k in EXPIRY_KEYS if (t := parse_time(self.data.get(k))) is not None), None)

    @cached_property
    def issued_at(self) -> datetime | None:
        """When the access token was issued (its JWT `iat`), else the file's `last_refresh`."""
        return token_issued_at(self.access_token) or self.last_refresh

    @cached_property
    def last_refresh(self) -> datetime | None:
        return next((t for k in LAST_REFRESH_KEYS if (t := parse_time(self.data.get(k))) is not None), None)

    def expired(self, at: datetime | None = None) -> bool:
        """True when the access token is known to be past its expiry."""
        return self.expires_at is not None and self.expires_at <= (at or now())

    # -- state -----------------------------------------------------------------------------------
    @property
    def disabled(self) -> bool:
        value = self.data.get("disabled")
        return value is True or (isinstance(value, str) and value.strip().lower() == "true")

    @cached_property
    def status(self) -> Status:
        """The recorded status. A needs-login record made for another refresh token (the file was
        replaced since, e.g. by CLIProxyAPI or a new login) no longer counts."""
        raw = self.data.get(STATUS_KEY)
        if not isinstance(raw, dict) or raw.get("state") != "needs-login":
            return Status()
        cred = raw.get("credential")
        if isinstance(cred, str) and cred != fingerprint(self.refresh_token):
            return Status()
        text = lambda key: raw.get(key) if isinstance(raw.get(key), str) else None  # noqa: E731
        return Status("needs-login", text("reason"), text("message"), parse_time(raw.get("at")))

    @property
    def needs_login(self) -> bool:
        return self.status.needs_login

    def state(self, at: datetime | None = None) -> str:
        """Display state: `disabled`, `needs-login`, `expired` or `ok`."""
        if self.disabled:
            return "disabled"
        if self.needs_login:
            return "needs-login"
        if self.expired(at):
            return "expired"
        return "ok"


# -- reading ---------------------------------------------------------------------------------------
def _is_account(data: Mapping[str, Any]) -> bool:
    kind = data.get("type")
    if kind is None:
        return bool(data.get("access_token") or data.get("refresh_token"))
    return isinstance(kind, str) and kind.strip().lower() == "codex"


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; AccountFileError when missing, unreadable or not an object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AccountFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountFileError(f"{path}: cannot read ({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AccountFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # an integer too long to convert, nesting deeper than the parser goes
        raise AccountFileError(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(data, dict):
        raise AccountFileError(f"{path}: expected a JSON object")
    return data


def load_account(path: str | os.PathLike[str]) -> Account:
    """One account file. AccountFileError when it is unreadable or not a Codex account."""
    path = Path(path)
    data = read_json(path)
    if not _is_account(data):
        raise AccountFileError(f"{path}: not a Codex account file (type {data.get('type')!r})")
    return Account(path, data)


def load_accounts(auth_dir: str | os.PathLike[str]) -> list[Account]:
    """Every top-level `*.json` account file in `auth_dir`, sorted by name. Hidden files and files of
    other providers are ignored; broken files are skipped with a warning naming them. A refresh that
    was interrupted after the issuer answered is completed first (`auth.journal`)."""
    directory = Path(auth_dir).expanduser()
    try:
        listing = list(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        logger.warning("cannot list auth dir %s: %s", directory, exc.strerror or exc)
        return []
    entries = sorted(p for p in listing if p.suffix == ".json" and not p.name.startswith("."))
    if any(p.name.endswith(".refresh-journal") for p in listing):
        from .journal import recover_journals  # the journal module builds on this one

        recover_journals([p for p in entries if p.is_file()])
    accounts = []
    for path in entries:
        if not path.is_file():
            continue
        try:
            data = read_json(path)
        except AccountFileError as exc:
            logger.warning("skipping account file %s", exc)
            continue
        if _is_account(data):
            accounts.append(Account(path, data))
        else:
            logger.debug("ignoring %s: type %r is not codex", path, data.get("type"))
    return accounts


# -- writing ---------------------------------------------------------------------------------------
def ensure_dir(directory: Path) -> None:
    """Create the auth dir (and parents) with mode 0700 if missing; existing dirs are left as they are."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_account_file(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Replace `path` atomically with `data` as JSON, mode 0600.

    A temp file in the same directory (created 0600) is written, flushed and fsynced, then renamed
    over the target, and the directory is fsynced: readers see the old or the new file, never a
    partial one, even if the process is killed mid-write.
    """
    path = Path(path)
    ensure_dir(path.parent)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), 0o600)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def update_account_file(path: Path, changes: Mapping[str, Any], remove: Iterable[str] = ()) -> Account:
    """Re-read `path`, apply `changes`, drop `remove` keys, write it back atomically. Other keys stay.
    Callers that race with refreshes hold the account lock (`auth.locking`)."""
    data = read_json(path)
    data.update(changes)
    for key in remove:
        data.pop(key, None)
    write_account_file(path, data)
    return Account(Path(path), data)


# -- naming ----------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[/\\\x00-\x1f]")


def _plan_part(plan: str) -> str:
    return "-".join(p for p in re.split(r"[^a-z0-9]+", plan.lower()) if p)


def account_filename(identity: Identity, hashed: bool = False) -> str:
    """CLIProxyAPI's file name: `codex-<email>-<plan>.json`, or `codex-<hash8>-<email>-<plan>.json`
    with `hashed` (8 hex chars of SHA-256 of the account id; for several workspaces of one email)."""
    parts = ["codex"]
    if hashed and identity.account_id:
        parts.append(hashlib.sha256(identity.account_id.encode()).hexdigest()[:8])
    email = _UNSAFE.sub("_", identity.email.strip()).lstrip(".")
    if email:
        parts.append(email)
    if plan := _plan_part(identity.plan):
        parts.append(plan)
    return "-".join(parts) + ".json"


def choose_account_path(auth_dir: Path, identity: Identity) -> Path:
    """Where a login for `identity` is saved: the existing file of the same account (same account id
    and email) if any, else the plain name, else the hashed name when the plain name belongs to
    another workspace of the same email."""
    for account in load_accounts(auth_dir):
        if account.account_id == identity.account_id and account.email.lower() == identity.email.lower():
            return account.path
    plain = auth_dir / account_filename(identity)
    if not plain.exists():
        return plain
    return auth_dir / account_filename(identity, hashed=True)
