"""Accounts on PostgreSQL, shared by every cliproxy host that names the same `store:`.

Tables (migrated by `pg.migrate`, component `accounts`):
- `cliproxy_accounts`: one row per account, `name` (the file name it has in an auth dir, e.g.
  `codex-me@example.com-plus.json`) and `data`, the same JSON object as the account file;
- `cliproxy_account_state`: quota, rests and `rest clear` stamps per account (what the state files
  in `.cliproxy-state/` hold), with the host that wrote it last;
- `cliproxy_refresh_journal`: a refresh's raw answer, written before it is parsed (see below).
Every write takes a number from one sequence (`seq`), so a host sees what changed by polling
`max(seq)` (cheap, and it survives the database going away, which LISTEN does not).

Refresh tokens are single-use across every host. A refresh runs in one transaction holding
`pg_advisory_xact_lock(lock_key("refresh", name))`: it re-reads the row under the lock (another host
may have refreshed: its tokens are adopted without calling the issuer), replays a journal entry
left by a refresher that died, and else calls the issuer through a child process
(`pg_exchange`, which journals the answer the moment it arrives, in its own autocommit session, and
which no second exchange can overtake); the row is then updated and the transaction commits, which
releases the lock. A journal entry whose spent token is still the account's is applied by the next
refresher or the next load; one that is not is stale and dropped.

Faults: a database that cannot be reached raises `pg.StoreUnavailable`; a refresh then fails with
the transient code `store_unavailable` before anything is sent to the issuer, so a refresh whose
answer could not be stored never happens.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cliproxy.addons.store import pg
from cliproxy.auth.journal import token_changes
from cliproxy.auth.oauth import response_json
from cliproxy.auth.refresh import RefreshError, TokenRefresher
from cliproxy.auth.store import STATUS_KEY, Account, fingerprint, status_record
from cliproxy.auth.timeutil import format_time, now

logger = logging.getLogger(__name__)

COMPONENT = "accounts"
STEPS = [
    """
    CREATE SEQUENCE cliproxy_account_seq;
    CREATE TABLE cliproxy_accounts (
        name TEXT PRIMARY KEY,
        data JSONB NOT NULL,
        seq BIGINT NOT NULL DEFAULT nextval('cliproxy_account_seq'),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE cliproxy_account_state (
        name TEXT PRIMARY KEY,
        state JSONB NOT NULL,
        writer TEXT NOT NULL DEFAULT '',
        seq BIGINT NOT NULL DEFAULT nextval('cliproxy_account_seq'),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX cliproxy_account_state_seq ON cliproxy_account_state (seq);
    CREATE TABLE cliproxy_refresh_journal (
        name TEXT NOT NULL,
        spent TEXT NOT NULL,
        body BYTEA NOT NULL,
        answered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (name, spent)
    );
    """,
]
LOCK_TIMEOUT = 120  # seconds a refresher waits for another host's refresh of the same account
STATEMENT_TIMEOUT = 15  # seconds: a hung database fails a query instead of hanging a worker

T = TypeVar("T")


def host_id() -> str:
    """Who writes a state row: lets a host skip its own writes when it polls for others'."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def valid_name(name: str) -> bool:
    """An account name is a plain file name (it is one again after `cliproxy store export`)."""
    return (
        bool(name) and "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".") and name.endswith(".json")
    )


def _account(name: str, data: Mapping[str, Any]) -> Account:
    return Account(Path(name), dict(data))


def merge_rests(old: Mapping[str, Any], new: Mapping[str, Any], at: float) -> dict[str, float]:
    """Rests (model or `*` → unix time) of two writers: the later end of each, past ones dropped.
    A rest set on any host holds on all of them until it ends or `rest clear` lifts it."""
    out: dict[str, float] = {}
    for source in (old, new):
        for key, until in source.items():
            if isinstance(until, int | float) and not isinstance(until, bool) and until > at:
                out[key] = max(out.get(key, 0.0), float(until))
    return out


@dataclass(frozen=True, slots=True)
class Changes:
    """What the poll found: the accounts' signature, and state rows written by other hosts since."""

    accounts: tuple[int, int]  # (count, max seq): changes when a row is added, changed or removed
    states: list[tuple[str, dict[str, Any]]]
    seq: int  # the highest state seq seen


class PgAccounts:
    """The account store on PostgreSQL. One connection for reads and state writes (serialised by a
    lock, so it can be used from worker threads); refreshes open their own."""

    shared = True

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.where = pg.redact(dsn)
        self.writer = host_id()
        self._lock = threading.Lock()
        self._conn: Any = None
        self._run(lambda conn: pg.migrate(conn, COMPONENT, STEPS))

    # -- the shared connection -------------------------------------------------------------------
    def _run(self, fn: Callable[[Any], T]) -> T:
        """`fn(conn)` on the shared connection, reconnecting once if it broke; StoreUnavailable when
        the database cannot be reached or the query fails."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = pg.connect(self.dsn)
                    self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT * 1000}")
                try:
                    return fn(self._conn)
                except psycopg.OperationalError as exc:
                    self._drop()
                    if attempt == 2:
                        raise pg.StoreUnavailable(f"store {self.where}: {pg._reason(exc)}") from None
                except psycopg.Error as exc:
                    if self._conn is not None and not self._conn.closed and self._conn.info.transaction_status != 0:
                        self._conn.rollback()
                    raise pg.StoreUnavailable(f"store {self.where}: {pg._reason(exc)}") from None
            raise AssertionError("not reached")

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            pass
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def connect_tx(self) -> Any:
        """A new connection for one refresh transaction (not autocommit), with lock and statement timeouts."""
        conn = pg.connect(self.dsn, autocommit=False, application="cliproxy-refresh")
        conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT * 1000}")
        conn.execute(f"SET statement_timeout = {(LOCK_TIMEOUT + STATEMENT_TIMEOUT) * 1000}")
        conn.commit()
        return conn

    # -- accounts --------------------------------------------------------------------------------
    def load(self) -> list[Account]:
        """Every account, sorted by name; journal entries left by dead refreshers are applied first."""

        def read(conn: Any) -> list[Account]:
            pending = [r[0] for r in conn.execute("SELECT DISTINCT name FROM cliproxy_refresh_journal").fetchall()]
            for name in pending:
                with conn.transaction():
                    if conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (pg.lock_key("refresh", name),)).fetchone()[0]:
                        replay(conn, name)
            rows = conn.execute("SELECT name, data FROM cliproxy_accounts ORDER BY name").fetchall()
            return [_account(name, data) for name, data in rows if isinstance(data, dict)]

        return self._run(read)

    def get(self, name: str) -> Account | None:
        row = self._run(lambda conn: conn.execute("SELECT data FROM cliproxy_accounts WHERE name = %s", (name,)).fetchone())
        return _account(name, row[0]) if row else None

    def put(self, name: str, data: Mapping[str, Any], *, replace: bool = True) -> bool:
        """Store an account's JSON under `name`; False when it exists and `replace` is off."""
        from psycopg.types.json import Jsonb

        if not valid_name(name):
            raise ValueError(f"{name!r} is not an account file name")
        sql = "INSERT INTO cliproxy_accounts (name, data) VALUES (%s, %s) ON CONFLICT (name) DO "
        if replace:
            sql += "UPDATE SET data = EXCLUDED.data, seq = nextval('cliproxy_account_seq'), updated_at = now()"
        else:
            sql += "NOTHING"
        return self._run(lambda conn: conn.execute(sql, (name, Jsonb(dict(data)))).rowcount == 1)

    def update(self, name: str, changes: Mapping[str, Any], remove: Iterable[str] = ()) -> Account | None:
        """Apply `changes` (and drop `remove` keys) to the stored JSON under the account's refresh lock."""

        def write(conn: Any) -> Account | None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg.lock_key("refresh", name),))
                return update_row(conn, name, changes, remove)

        return self._run(write)

    def remove(self, name: str) -> Account | None:
        """Delete the account (and its state and journal) under its refresh lock, after applying any
        journal entry; returns the account as it was, whose tokens are the ones to revoke."""

        def delete(conn: Any) -> Account | None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg.lock_key("refresh", name),))
                replay(conn, name)
                row = conn.execute("DELETE FROM cliproxy_accounts WHERE name = %s RETURNING data", (name,)).fetchone()
                conn.execute("DELETE FROM cliproxy_account_state WHERE name = %s", (name,))
                conn.execute("DELETE FROM cliproxy_refresh_journal WHERE name = %s", (name,))
            return _account(name, row[0]) if row else None

        return self._run(delete)

    # -- state -----------------------------------------------------------------------------------
    def read_state(self, name: str) -> dict[str, Any]:
        row = self._run(lambda conn: conn.execute("SELECT state FROM cliproxy_account_state WHERE name = %s", (name,)).fetchone())
        return dict(row[0]) if row and isinstance(row[0], dict) else {}

    def read_states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        rows = self._run(
            lambda conn: conn.execute("SELECT name, state FROM cliproxy_account_state WHERE name = ANY(%s)", (names,)).fetchall()
        )
        return {name: dict(state) for name, state in rows if isinstance(state, dict)}

    def write_state(self, name: str, state: dict[str, Any]) -> None:
        """Store a host's view of the account's state. Rests merge with the stored ones (each ends at
        the later time) unless this write carries a newer `rest_cleared_at` stamp: a clear wins."""
        from psycopg.types.json import Jsonb

        def write(conn: Any) -> None:
            with conn.transaction():
                row = conn.execute("SELECT state FROM cliproxy_account_state WHERE name = %s FOR UPDATE", (name,)).fetchone()
                old = row[0] if row and isinstance(row[0], dict) else {}
                new = dict(state)
                if str(new.get("rest_cleared_at") or "") <= str(old.get("rest_cleared_at") or ""):  # stamps sort by time
                    new["rest_cleared_at"] = old.get("rest_cleared_at")  # a writer that has not seen the last clear yet
                    new["rests"] = merge_rests(old.get("rests") or {}, new.get("rests") or {}, time.time())
                    new["limited"] = sorted((set(old.get("limited") or ()) | set(new.get("limited") or ())) & set(new["rests"]))
                    if not new.get("quota") and old.get("quota"):
                        new["quota"] = old["quota"]
                conn.execute(
                    "INSERT INTO cliproxy_account_state (name, state, writer) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, writer = EXCLUDED.writer,"
                    " seq = nextval('cliproxy_account_seq'), updated_at = now()",
                    (name, Jsonb(new), self.writer),
                )

        self._run(write)

    # -- following other hosts -------------------------------------------------------------------
    def poll(self, seq: int) -> Changes:
        """The accounts' signature and the state rows other hosts wrote after `seq` (one round trip each)."""

        def read(conn: Any) -> Changes:
            count, top = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM cliproxy_accounts").fetchone()
            rows = conn.execute(
                "SELECT name, state, writer, seq FROM cliproxy_account_state WHERE seq > %s ORDER BY seq", (seq,)
            ).fetchall()
            last = max([seq, *(r[3] for r in rows)])
            return Changes((int(count), int(top)), [(r[0], dict(r[1])) for r in rows if r[2] != self.writer], int(last))

        return self._run(read)

    def refresher(self, issuer: str) -> PgRefresher:
        return PgRefresher(self, issuer)


# -- rows under the refresh lock (the caller's transaction holds it) ---------------------------------
def update_row(conn: Any, name: str, changes: Mapping[str, Any], remove: Iterable[str] = ()) -> Account | None:
    from psycopg.types.json import Jsonb

    row = conn.execute("SELECT data FROM cliproxy_accounts WHERE name = %s FOR UPDATE", (name,)).fetchone()
    if row is None:
        return None
    data = dict(row[0])
    data.update(changes)
    for key in remove:
        data.pop(key, None)
    conn.execute(
        "UPDATE cliproxy_accounts SET data = %s, seq = nextval('cliproxy_account_seq'), updated_at = now() WHERE name = %s",
        (Jsonb(data), name),
    )
    return _account(name, data)


def replay(conn: Any, name: str) -> str | None:
    """Apply the journal entry whose spent refresh token is still the account's; drop the others.
    Returns "replayed", "stale" or None (nothing journaled)."""
    entries = conn.execute("SELECT spent, body, answered_at FROM cliproxy_refresh_journal WHERE name = %s", (name,)).fetchall()
    if not entries:
        return None
    row = conn.execute("SELECT data->>'refresh_token' FROM cliproxy_accounts WHERE name = %s FOR UPDATE", (name,)).fetchone()
    current = fingerprint((row[0] or "").strip()) if row else None
    outcome = "stale"
    for spent, body, at in entries:
        if spent == current:
            try:
                answer = json.loads(bytes(body))
                changes = token_changes(answer, at if isinstance(at, datetime) else datetime.now(UTC))
            except ValueError:
                logger.warning("%s: dropping an unreadable refresh journal entry; if this login fails, sign in again", name)
                continue
            if "access_token" in changes:
                update_row(conn, name, changes, remove=(STATUS_KEY,))
                outcome = "replayed"
                logger.info("%s: applied the tokens of a refresh interrupted before they were saved", name)
    conn.execute("DELETE FROM cliproxy_refresh_journal WHERE name = %s", (name,))
    return outcome


# -- refreshing --------------------------------------------------------------------------------------
def _store_error(account: Account, exc: Exception) -> RefreshError:
    return RefreshError(
        f"{account.label}: not refreshing while the account store is unreachable ({exc})", code="store_unavailable", permanent=False
    )


class PgRefresher(TokenRefresher):
    """`TokenRefresher` (same policy, retries, error classes) with the account row, an advisory lock
    per account and the journal table in place of the file, its `flock` and the journal file."""

    def __init__(self, store: PgAccounts, issuer: str, **kwargs: Any) -> None:
        super().__init__(issuer, **kwargs)
        self.store = store
        self._tx: dict[str, Any] = {}  # account name -> the connection whose transaction holds its lock
        self._latest: dict[str, Account] = {}  # account name -> the newest tokens this process refreshed or adopted
        # waits for other hosts' refreshes (up to LOCK_TIMEOUT each) get their own threads, not the loop's default executor
        self._waits = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="cliproxy-refresh-lock")

    async def ensure_fresh(self, account: Account, *, force: bool = False) -> Account:
        if not force and not self.needs_refresh(account):
            return account
        async with self._local_lock(account.path):
            known = self._latest.get(account.name)
            if known is not None and _newer(known, account) and self._adoptable(account, known, force):
                return known  # refreshed while this caller waited for the local lock: no database round trip
            rested = self._known_failure(account, force)
            if rested is not None:
                return rested
            loop = asyncio.get_running_loop()
            try:
                conn = await loop.run_in_executor(self._waits, self.store.connect_tx)
            except pg.StoreUnavailable as exc:
                raise _store_error(account, exc) from None
            try:
                latest = await loop.run_in_executor(self._waits, self._locked_read, conn, account)
                if self._adoptable(account, latest, force):
                    self._latest[account.name] = latest
                    return latest
                if latest.refresh_token != account.refresh_token:
                    rested = self._known_failure(latest, force)
                    if rested is not None:
                        return rested
                self._tx[account.name] = conn
                fresh = await self._refresh(latest)
                self._latest[account.name] = fresh
                return fresh
            finally:
                self._tx.pop(account.name, None)
                await loop.run_in_executor(self._waits, _end, conn)

    def _locked_read(self, conn: Any, seen: Account) -> Account:
        """Take the account's refresh lock (in `conn`'s transaction), apply a journal, read the row."""
        import psycopg

        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg.lock_key("refresh", seen.name),))
            replay(conn, seen.name)
            row = conn.execute("SELECT data FROM cliproxy_accounts WHERE name = %s", (seen.name,)).fetchone()
        except psycopg.errors.LockNotAvailable:
            raise RefreshError(
                f"{seen.label}: another host has been refreshing this account for over {LOCK_TIMEOUT}s",
                code="lock_timeout",
                permanent=False,
            ) from None
        except psycopg.Error as exc:
            raise _store_error(seen, pg.StoreUnavailable(pg._reason(exc))) from None
        if row is None:
            raise RefreshError(f"{seen.label}: the account was removed from the store", code="account_removed", permanent=True)
        return _account(seen.name, row[0])

    async def _exchange(
        self, client: httpx.Client | None, url: str, form: dict[str, str], header: bytes, account: Account, lock_fd: int | None
    ) -> tuple[httpx.Response, bool]:
        """POST through `pg_exchange` (a child process that journals the answer in the database)."""
        job = json.dumps(
            {
                "dsn": self.store.dsn,
                "name": account.name,
                "spent": fingerprint(account.refresh_token),
                "url": url,
                "form": form,
                "timeout": self.timeout,
            }
        ).encode()

        def in_child() -> dict[str, Any]:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "cliproxy.addons.store.pg_exchange"],
                    input=job,
                    capture_output=True,
                    cwd=os.sep,
                    start_new_session=True,
                    timeout=2 * self.timeout + 60,
                )
            except subprocess.TimeoutExpired:
                raise httpx.ReadTimeout("the refresh helper process did not finish") from None
            except OSError as exc:
                raise httpx.ConnectError(f"cannot start the refresh helper process ({exc})") from None
            try:
                out = json.loads(proc.stdout)
            except ValueError:
                raise httpx.RemoteProtocolError(f"the refresh helper process failed (exit status {proc.returncode})") from None
            return out if isinstance(out, dict) else {}

        done = asyncio.ensure_future(asyncio.to_thread(in_child))
        try:
            out = await asyncio.shield(done)
        except asyncio.CancelledError:
            while not done.done():  # the lock is held until the exchange is over, even when the caller gives up
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    pass
            raise
        error = out.get("error")
        if error == "store":
            raise _store_error(account, pg.StoreUnavailable(out.get("message", "")))
        if error == "stale":
            raise RefreshError(f"{account.label}: {out.get('message')}; retry", code="stale", permanent=False)
        if error:
            raise (httpx.ConnectError if error == "connect" else httpx.ReadError)(out.get("message", ""))
        if out.get("journal_error"):
            logger.error("%s: cannot write the refresh journal (%s)", account.label, out["journal_error"])
        if out.get("earlier"):
            logger.info("%s: using the answer of an exchange that outlived its refresher", account.label)
        response = httpx.Response(int(out["status"]), content=base64.b64decode(out["body"]), request=httpx.Request("POST", url))
        return response, bool(out.get("journaled"))

    def _persist(self, account: Account, response: httpx.Response, journaled: bool) -> Account:
        """Write the rotated tokens to the row, drop the journal entry, commit (which releases the lock)."""
        import psycopg

        at = now()
        try:
            changes = token_changes(response_json(response), at)
        except ValueError:
            changes = {"type": "codex", "last_refresh": format_time(at)}
        conn = self._tx[account.name]
        try:
            fresh = update_row(conn, account.name, changes, remove=(STATUS_KEY,))
            conn.execute("DELETE FROM cliproxy_refresh_journal WHERE name = %s", (account.name,))
            conn.commit()
        except psycopg.Error as exc:
            kept = (
                "it is kept in the refresh journal and applied once the database is back"
                if journaled
                else "the old refresh token is no longer valid"
            )
            message = f"{account.label}: refreshed, but the new tokens could not be saved ({pg._reason(exc)}); {kept}"
            logger.error("%s", message)
            raise RefreshError(message, code="persist_failed", permanent=not journaled) from None
        if fresh is None:
            raise RefreshError(f"{account.label}: the account was removed from the store", code="account_removed", permanent=True)
        if "access_token" not in changes:
            raise RefreshError(f"{account.label}: the token endpoint's answer has no access_token", code="bad_response", permanent=False)
        logger.info(
            "%s: access token refreshed (valid until %s)", fresh.label, format_time(fresh.expires_at) if fresh.expires_at else "unknown"
        )
        return fresh

    def _terminal(self, account: Account, reason: str, detail: str, status: int | None) -> RefreshError:
        """Record a dead login in the row and in memory; returns the error to raise."""
        import psycopg

        error = RefreshError(f"{account.label}: {detail}", code=reason, permanent=True, status=status)
        self._dead[self._key(account)] = error
        conn = self._tx.get(account.name)
        try:
            if conn is not None:
                update_row(conn, account.name, {STATUS_KEY: status_record(reason, detail, account.refresh_token)})
                conn.commit()
        except psycopg.Error as exc:
            logger.warning("%s: cannot record the needs-login state: %s", account.label, pg._reason(exc))
        logger.info("%s", error)
        return self._copy(error)


def _newer(known: Account, seen: Account) -> bool:
    """Whether `known`'s access token was issued after `seen`'s (a newer login seen meanwhile is not overridden)."""
    return known.issued_at is not None and (seen.issued_at is None or known.issued_at > seen.issued_at)


def _end(conn: Any) -> None:
    """Roll back what was not committed (releasing the lock) and close."""
    try:
        conn.rollback()
        conn.close()
    except Exception:  # noqa: BLE001 - a connection lost with the database needs no cleanup
        pass
