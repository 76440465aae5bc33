"""One PostgreSQL connection that survives the database going away (pure; psycopg imported lazily).

The ledger and the response store each keep one connection, used from one thread. The database may
restart or drop connections while cliproxy runs: an operation that meets a dead connection opens a
new one and runs once more (the failed attempt committed nothing), and when the database is really
gone the caller gets `StoreUnavailable` at once, not a hang: the callers decide what that means (rows
wait in memory; a lookup is answered 503).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cliproxy.addons.store import pg

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
#: After a failed connect, calls fail at once for this long instead of each waiting for a connect
#: timeout of their own (a database host that drops packets would otherwise hold every lookup 5 s).
RETRY_SECONDS = 1.0
#: Bounds on one statement and on waiting for a row lock (another host's transaction): a database
#: that stalls is reported as unavailable instead of holding the store's thread.
SESSION_SETTINGS = ("SET statement_timeout = '15s'", "SET lock_timeout = '10s'")


class PgSession:
    """A lazily opened, migrated connection to `dsn` for one component (its tables, its schema steps)."""

    #: (until, why) per DSN after a failed connect; kept across sessions, since an opener that fails
    #: builds a new store (and session) on each try.
    _down: dict[str, tuple[float, pg.StoreUnavailable]] = {}

    def __init__(self, dsn: str, component: str, steps: Sequence[str], setup: Sequence[str] = ()) -> None:
        self.dsn = dsn
        self.component = component
        self.steps = steps
        self.setup = (*SESSION_SETTINGS, *setup)
        self._conn: psycopg.Connection[Any] | None = None
        self._migrated = False

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection, opened (and the schema brought forward, once) when there is none."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            down = self._down.get(self.dsn)
            if down is not None and time.monotonic() < down[0]:
                raise down[1]
            try:
                conn = pg.connect(self.dsn, application=f"cliproxy-{self.component}")
            except pg.StoreUnavailable as exc:
                self._down[self.dsn] = (time.monotonic() + RETRY_SECONDS, exc)
                raise
            self._down.pop(self.dsn, None)
            try:
                for statement in self.setup:
                    conn.execute(statement.encode())
                if not self._migrated:
                    pg.migrate(conn, self.component, self.steps)
                    self._migrated = True
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`fn(connection)`; a connection found dead is replaced and `fn` run once more. Database
        failures come out as `StoreUnavailable` (with the DSN's password hidden)."""
        import psycopg

        for attempt in (1, 2):
            fresh = self._conn is None or self._conn.closed or self._conn.broken
            try:
                return fn(self.connection())
            except pg.StoreUnavailable:
                raise
            except psycopg.OperationalError as exc:
                dead = self._conn is None or self._conn.closed or self._conn.broken
                if dead:
                    self.close()
                if dead and not fresh and attempt == 1:
                    continue  # the database restarted since the last use: once more on a new connection
                raise pg.StoreUnavailable(f"store {pg.redact(self.dsn)}: {reason(exc)}") from None
            except psycopg.Error as exc:
                raise pg.StoreUnavailable(f"store {pg.redact(self.dsn)}: {reason(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def reason(exc: BaseException) -> str:
    """The first line of a database error, the password hidden (psycopg may quote the connection string)."""
    lines = str(exc).strip().splitlines()
    return pg.redact(lines[0]) if lines else type(exc).__name__
