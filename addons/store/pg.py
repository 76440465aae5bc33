"""PostgreSQL, the store several cliproxy hosts share (optional: `pip install -e '.[postgres]'`).

`store: postgresql://…` in the config, or `CLIPROXY_STORE_DSN`, names the database. Each part of
cliproxy that keeps shared state there (accounts and refresh coordination, the usage ledger, the
conversation store) owns its tables and migrates them itself with `migrate()`: numbered steps, the
applied version recorded per part, under an advisory lock so that hosts starting together migrate
once. psycopg is imported only when a DSN is in use, so the embedded default needs none of it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

DSN_ENV = "CLIPROXY_STORE_DSN"
SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT = 5  # seconds: an unreachable database is reported, not waited on
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class StoreUnavailable(Exception):
    """The database cannot be reached or used; the message never holds the password."""


def is_dsn(value: str | None) -> bool:
    return bool(value) and str(value).startswith(SCHEMES)


def redact(dsn: str) -> str:
    """The DSN with its password replaced, fit for logs and errors."""
    return _PASSWORD.sub(r"\1***@", dsn)


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (e.g. `("refresh", account)`)."""
    text = "\x1f".join(parts).encode()
    high, low = zlib.crc32(text), zlib.crc32(text[::-1] + b"cliproxy")
    value = (high << 32) | low
    return value - (1 << 64) if value >= 1 << 63 else value


def connect(dsn: str, *, autocommit: bool = True, application: str = "cliproxy") -> psycopg.Connection[Any]:
    """A new connection, or `StoreUnavailable` saying why (without the password)."""
    try:
        import psycopg
    except ImportError:
        raise StoreUnavailable("store: a postgresql:// DSN needs psycopg: pip install -e '.[postgres]'") from None
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT, application_name=application)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"store {redact(dsn)}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS cliproxy_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    migrated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def migrate(conn: psycopg.Connection[Any], component: str, steps: Sequence[str]) -> int:
    """Apply the steps of `component` past its recorded version, in one transaction; returns the version.

    Step n (1-based) is `steps[n - 1]`; steps are only ever appended, never edited, so a database
    written by an older cliproxy is brought forward and a newer one is refused rather than damaged.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema"),))
        conn.execute(_SCHEMA_TABLE)
        row = conn.execute("SELECT version FROM cliproxy_schema WHERE component = %s", (component,)).fetchone()
        current = int(row[0]) if row else 0
        if current > len(steps):
            raise StoreUnavailable(
                f"store: the {component} tables are at version {current}, newer than this cliproxy knows ({len(steps)}); upgrade cliproxy"
            )
        for step in steps[current:]:
            conn.execute(step.encode())
        if current < len(steps):
            conn.execute(
                "INSERT INTO cliproxy_schema (component, version) VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()",
                (component, len(steps)),
            )
    return len(steps)
