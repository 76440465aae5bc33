"""Where accounts live: the auth dir (the embedded default) or PostgreSQL (`store:` in the config).

Both stores hand out the same `Account` snapshots (the JSON of a CLIProxyAPI account file) and the
same per-account state (quota, rests, `rest clear` stamps), and give a refresher with the same
`ensure_fresh` contract. The file store is today's auth dir, unchanged: `auth.store` files, `flock`
per account and the refresh journal beside it. The PostgreSQL store (`pg_accounts`) is what several
hosts share. Pure: no mitmproxy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from cliproxy.auth.quota import read_state, state_path, write_state
from cliproxy.auth.refresh import TokenRefresher
from cliproxy.auth.store import Account, load_accounts


class AccountStore(Protocol):
    """What the proxy and the command line need from wherever the accounts are kept."""

    shared: bool  # True when other hosts may change accounts and state behind our back
    where: str  # a display name: the auth dir, or the DSN without its password

    def load(self) -> list[Account]: ...

    def read_state(self, name: str) -> dict[str, Any]: ...

    def read_states(self, names: list[str]) -> dict[str, dict[str, Any]]: ...

    def write_state(self, name: str, state: dict[str, Any]) -> None: ...

    def refresher(self, issuer: str) -> TokenRefresher: ...

    def close(self) -> None: ...


class FileAccounts:
    """The auth dir: one JSON file per account, state files in `.cliproxy-state/` (today's behaviour)."""

    shared = False

    def __init__(self, auth_dir: Path) -> None:
        self.auth_dir = Path(auth_dir)
        self.where = str(self.auth_dir)

    def load(self) -> list[Account]:
        return load_accounts(self.auth_dir)

    def read_state(self, name: str) -> dict[str, Any]:
        return read_state(self.auth_dir, name)

    def read_states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return {name: read_state(self.auth_dir, name) for name in names}

    def write_state(self, name: str, state: dict[str, Any]) -> None:
        write_state(self.auth_dir, name, state)

    def has_state(self, name: str) -> bool:
        return state_path(self.auth_dir, name).exists()

    def refresher(self, issuer: str) -> TokenRefresher:
        return TokenRefresher(issuer)

    def close(self) -> None:
        pass


def open_accounts(store: str | None, auth_dir: Path) -> AccountStore:
    """The store named by the config's `store` DSN, else the auth dir. Raises `pg.StoreUnavailable`
    when the database cannot be reached or migrated (one clear message, no password)."""
    if store:
        from cliproxy.addons.store.pg_accounts import PgAccounts

        return PgAccounts(store)
    return FileAccounts(auth_dir)
