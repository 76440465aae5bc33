"""The usage ledger (pure; no mitmproxy import): one row per finished request or WebSocket turn, and the
summaries `cliproxy usage` prints.

`UsageLedger` is the interface (SQLite here, PostgreSQL in `pg_ledger`); `Writer` feeds
it off the request path: rows go into a queue that one thread drains in batches, so a slow, locked or
full database never delays or fails a request. Rows name the client key by a short hash, never the key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FILE_NAME = "usage.sqlite3"
BUSY_SECONDS = 2.0
BATCH = 500  # rows per transaction
MAX_PENDING = 100_000  # rows held while the database is unusable; beyond that new rows are dropped
PURGE_SECONDS = 3600.0
TOKEN_KEYS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
GROUPINGS = ("account", "model", "key", "day", "hour")
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Row:
    """One finished request (or WebSocket turn). Token counts are the upstream's `usage`, which is what
    clients are told: `input_tokens` includes `cached_tokens`, `output_tokens` includes `reasoning_tokens`."""

    t: float  # unix time it finished
    account: str | None = None  # pool member label
    key: str | None = None  # client key identity: `key:<hash>` or `loopback`
    route: str = ""
    format: str = ""  # openai | anthropic
    client_model: str | None = None
    model: str | None = None  # upstream model
    effort: str | None = None
    tier_asked: str | None = None
    tier_served: str | None = None
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    ttfb: float | None = None  # seconds to the first byte (headers, or first WebSocket event)
    seconds: float | None = None  # duration
    status: int | None = None  # status the client got (WebSocket turns: 200 or the error's)
    error: str | None = None
    failovers: int = 0


COLUMNS = tuple(f.name for f in fields(Row))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_fields(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """The four token counts of a Codex/Responses `usage` object (missing or odd values count 0), plus total.
    Also reads its own output back (flat `cached_tokens`, `reasoning_tokens`)."""
    usage = usage if isinstance(usage, Mapping) else {}
    details_in = usage.get("input_tokens_details")
    details_out = usage.get("output_tokens_details")
    out = {
        "input_tokens": _int(usage.get("input_tokens")),
        "cached_tokens": _int(details_in.get("cached_tokens") if isinstance(details_in, Mapping) else usage.get("cached_tokens")),
        "output_tokens": _int(usage.get("output_tokens")),
        "reasoning_tokens": _int(
            details_out.get("reasoning_tokens") if isinstance(details_out, Mapping) else usage.get("reasoning_tokens")
        ),
    }
    out["total_tokens"] = _int(usage.get("total_tokens")) or out["input_tokens"] + out["output_tokens"]
    return out


def parse_since(text: str) -> float:
    """`24h`, `7d`, `90m`, `2w`, `30s` → seconds; ValueError with a readable message otherwise."""
    m = _SINCE.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--since {text!r}: expected a number and a unit, like 24h, 7d, 90m or 2w")
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True, slots=True)
class Summary:
    totals: dict[str, int]
    rows: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"totals": self.totals, "rows": self.rows}


class UsageLedger(ABC):
    """Where ledger rows are kept. Implementations are used from one thread at a time."""

    @abstractmethod
    def add(self, rows: Sequence[Row]) -> None:
        """Keep the rows (one transaction)."""

    @abstractmethod
    def summary(self, since: float, by: str | None = None) -> Summary:
        """Totals of rows at or after `since` (unix time), and per `by` group (one of GROUPINGS)."""

    @abstractmethod
    def purge(self, before: float) -> int:
        """Drop rows older than `before`; how many went."""

    @abstractmethod
    def close(self) -> None: ...


_GROUP_SQL = {
    "account": "COALESCE(account, '-')",
    "model": "COALESCE(model, '-')",
    "key": "COALESCE(key, '-')",
    "day": "strftime('%Y-%m-%d', t, 'unixepoch', 'localtime')",
    "hour": "strftime('%Y-%m-%d %H:00', t, 'unixepoch', 'localtime')",
}
_SUMS = (
    "COUNT(*) AS requests, "
    + ", ".join(f"COALESCE(SUM({k}), 0) AS {k}" for k in TOKEN_KEYS)
    + ", COALESCE(SUM(CASE WHEN error IS NOT NULL OR status >= 400 THEN 1 ELSE 0 END), 0) AS errors"
)
_TOTAL_KEYS = ("requests", *TOKEN_KEYS, "errors")


def summary_sql(table: str, group_sql: Mapping[str, str], by: str | None, mark: str) -> tuple[str, str | None]:
    """The two queries of a summary (totals; per group, or None): the same SQL on every database but
    for the table, the placeholder and the day/hour expressions, so both give the same answer."""
    if by is not None and by not in GROUPINGS:
        raise ValueError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
    total = f"SELECT {_SUMS} FROM {table} WHERE t >= {mark}"
    if by is None:
        return total, None
    order = "g" if by in ("day", "hour") else "requests DESC, g"
    return total, f"SELECT {group_sql[by]} AS g, {_SUMS} FROM {table} WHERE t >= {mark} GROUP BY g ORDER BY {order}"


def summary_of(by: str | None, total: Sequence[Any], groups: Sequence[Sequence[Any]]) -> Summary:
    """The `Summary` of the rows the `summary_sql` queries gave."""
    rows = [{by: values[0], **dict(zip(_TOTAL_KEYS, values[1:], strict=True))} for values in groups] if by else []
    return Summary(dict(zip(_TOTAL_KEYS, total, strict=True)), rows)


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


class SQLiteLedger(UsageLedger):
    """The ledger in one SQLite file in the state folder (WAL: `cliproxy usage` reads while the proxy writes).
    A damaged or foreign file is moved aside (`*.corrupt-<time>`) with one log line and a new one started."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS usage (t REAL NOT NULL, account TEXT, key TEXT, route TEXT, format TEXT, "
        "client_model TEXT, model TEXT, effort TEXT, tier_asked TEXT, tier_served TEXT, input_tokens INTEGER, "
        "cached_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER, ttfb REAL, seconds REAL, "
        "status INTEGER, error TEXT, failovers INTEGER);"
        "CREATE INDEX IF NOT EXISTS usage_time ON usage (t);"
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._replace(exc)

    @classmethod
    def in_state_dir(cls, auth_dir: Path) -> SQLiteLedger:
        from cliproxy.auth.quota import STATE_DIR

        return cls(Path(auth_dir) / STATE_DIR / FILE_NAME)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        try:
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(self.SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _replace(self, exc: Exception) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        logger.error("cliproxy: the usage ledger %s is damaged (%s); moved it to %s and started a new one", self.path, exc, aside.name)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self._db = self._connect()

    def _run(self, fn: Any) -> Any:
        try:
            if self._db is None:
                self._db = self._connect()
            return fn(self._db)
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                self._replace(exc)
            raise

    def add(self, rows: Sequence[Row]) -> None:
        sql = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, [tuple(asdict(r).values()) for r in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        self._run(write)

    def summary(self, since: float, by: str | None = None) -> Summary:
        total_sql, group_sql = summary_sql("usage", _GROUP_SQL, by, "?")

        def read(db: sqlite3.Connection) -> Summary:
            total = db.execute(total_sql, (since,)).fetchone()
            groups = db.execute(group_sql, (since,)).fetchall() if group_sql else []
            return summary_of(by, total, groups)

        return self._run(read)

    def purge(self, before: float) -> int:
        return self._run(lambda db: db.execute("DELETE FROM usage WHERE t < ?", (before,)).rowcount)

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


class Writer:
    """Drains rows into a ledger on its own thread, in batches. `put` never blocks and never raises.

    A failing write keeps its rows for the next try (up to MAX_PENDING, then new rows are dropped); an
    outage (a locked database, a full disk, a database server gone) is logged once when it starts, once
    if rows have to be dropped, and once when rows are written again."""

    def __init__(self, opener: Any, retention_days: float = 90.0) -> None:
        self._opener = opener
        self.retention_days = retention_days
        self._queue: queue.SimpleQueue[Row | None] = queue.SimpleQueue()
        self._pending: list[Row] = []
        self._failing = False
        self._dropped = 0
        self._idle = threading.Event()
        self._idle.set()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="cliproxy-ledger", daemon=True)
        self._thread.start()

    def put(self, row: Row) -> None:
        self._idle.clear()
        self._queue.put(row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row put so far was written (or given up on for now)."""
        self._queue.put(None)
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within `timeout`), then close the ledger."""
        self._closing = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _warn(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            kind = f"{type(exc).__name__}: {exc}"[:200]
            logger.error("cliproxy: the usage ledger cannot be written (%s); requests go on, rows wait in memory", kind)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            lost = f"; {self._dropped} rows beyond {MAX_PENDING} were dropped" if self._dropped else ""
            logger.warning("cliproxy: the usage ledger is written again%s", lost)
            self._dropped = 0

    def _loop(self) -> None:
        ledger: UsageLedger | None = None
        purged = 0.0
        while True:
            try:
                item = self._queue.get(timeout=1.0 if self._pending else None)  # rows held back: retried each second
            except queue.Empty:
                item = None
            stop = item is None and self._closing
            if item is not None:
                self._pending.append(item)
            while len(self._pending) < BATCH * 4:  # take what else is queued, without waiting
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is not None:
                    self._pending.append(more)
            try:
                if ledger is None:
                    ledger = self._opener()
                assert ledger is not None
                while self._pending:
                    ledger.add(self._pending[:BATCH])
                    del self._pending[:BATCH]
                if time.monotonic() - purged > PURGE_SECONDS and self.retention_days > 0:
                    purged = time.monotonic()
                    ledger.purge(time.time() - self.retention_days * 86400)
                self._recovered()
            except Exception as exc:
                self._warn(exc)
                if len(self._pending) > MAX_PENDING:
                    if not self._dropped:
                        logger.error(
                            "cliproxy: more than %d usage rows wait for the ledger; newer ones are dropped until it returns", MAX_PENDING
                        )
                    self._dropped += len(self._pending) - MAX_PENDING
                    del self._pending[MAX_PENDING:]
                if stop:
                    break
                time.sleep(0.5)  # a locked or full database: try again later
            if self._queue.empty():
                self._idle.set()
            if stop:
                break
        if ledger is not None:
            ledger.close()
