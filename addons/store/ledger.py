"""The usage ledger (pure; no mitmproxy import): one row per finished request or WebSocket turn, and the
summaries `cliproxy usage` prints.

`UsageLedger` is the interface (SQLite here, PostgreSQL in `pg_ledger`); `Writer` feeds
it off the request path: rows go into a queue that one thread drains in batches, so a slow, locked or
full database never delays or fails a request. Rows name the client key by a short hash, never the key.
"""

from __future__ import annotations

import contextlib
import logging
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

from cliproxy.addons.store.sqlite_file import SQLiteFile, recovering

logger = logging.getLogger(__name__)

FILE_NAME = "usage.sqlite3"
BUSY_SECONDS = 2.0
BATCH = 500  # rows per transaction
LINGER = 0.1  # seconds the writer waits after a row for the rows that follow it
MAX_PENDING = 100_000  # rows held while the database is unusable; beyond that new rows are dropped
PURGE_SECONDS = 3600.0
TOKEN_KEYS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
GROUPINGS = ("account", "model", "key", "day", "hour")
SERIES_GROUPS = ("account", "model", "key")
#: What `recent_errors` tells of each failed row.
ERROR_KEYS = ("t", "account", "route", "client_model", "model", "status", "error", "failovers")
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
    image_tokens: int = 0  # image generation's image tokens (input images and generated ones), apart from the above


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


def image_usage_of(response: Mapping[str, Any]) -> dict[str, Any] | None:
    """The image tool's usage in a Responses answer (`tool_usage.image_gen`), or None."""
    tool_usage = response.get("tool_usage")
    usage = tool_usage.get("image_gen") if isinstance(tool_usage, Mapping) else None
    return dict(usage) if isinstance(usage, Mapping) else None


def image_tokens(usage: Mapping[str, Any] | None) -> int:
    """The image tokens of an image generation's usage (an Images answer's, or the image tool's): the
    input images (`input_tokens_details.image_tokens`) plus the generated ones (`output_tokens_details.
    image_tokens` where given, else all of `output_tokens`: an image model's output is the image)."""
    if not isinstance(usage, Mapping):
        return 0
    details_in, details_out = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    given_in = _int(details_in.get("image_tokens")) if isinstance(details_in, Mapping) else 0
    if isinstance(details_out, Mapping) and "image_tokens" in details_out:
        return given_in + _int(details_out.get("image_tokens"))
    return given_in + _int(usage.get("output_tokens"))


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
    """Where ledger rows are kept. Implementations are used from one thread at a time.

    The read side is `summary`, `series` and `recent_errors`: all that `cliproxy usage` and the status
    page ask, so another database needs only these (and `add`, `purge`, `close`)."""

    @abstractmethod
    def add(self, rows: Sequence[Row]) -> None:
        """Keep the rows (one transaction)."""

    @abstractmethod
    def summary(self, since: float, by: str | None = None) -> Summary:
        """Totals of rows at or after `since` (unix time), and per `by` group (one of GROUPINGS)."""

    @abstractmethod
    def series(self, since: float, step: float, by: Sequence[str]) -> list[dict[str, Any]]:
        """Sums per time bucket (`step` seconds from `since`) and group of the `by` columns (each one of
        SERIES_GROUPS; several at once cost one pass): rows `{"t": bucket start, <each by>: value, requests,
        ...tokens, image_tokens, errors}`, by time then group; buckets without rows are left out."""

    @abstractmethod
    def recent_errors(self, since: float, limit: int = 20) -> list[dict[str, Any]]:
        """The newest failed rows (an error, or a status of 400 and above) at or after `since`, newest
        first, with the fields in ERROR_KEYS."""

    @abstractmethod
    def purge(self, before: float) -> int:
        """Drop rows older than `before`; how many went."""

    @abstractmethod
    def close(self) -> None: ...


_QUARTER = 900  # seconds
_LOCAL_TIME = {"day": "%Y-%m-%d", "hour": "%Y-%m-%d %H:00"}  # the names SQLite's strftime gives (see _GROUP_SQL)
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
    + ", COALESCE(SUM(image_tokens), 0) AS image_tokens"
    + ", COALESCE(SUM(CASE WHEN error IS NOT NULL OR status >= 400 THEN 1 ELSE 0 END), 0) AS errors"
)
TOTAL_KEYS = ("requests", *TOKEN_KEYS, "image_tokens", "errors")


class SQLiteLedger(SQLiteFile, UsageLedger):
    """The ledger in one SQLite file in the state folder (WAL: `cliproxy usage` and the status page read
    while the proxy writes). A damaged or foreign file is moved aside with one log line and a new one started."""

    WHAT = "usage ledger"
    BUSY_SECONDS = BUSY_SECONDS
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS usage (t REAL NOT NULL, account TEXT, key TEXT, route TEXT, format TEXT, "
        "client_model TEXT, model TEXT, effort TEXT, tier_asked TEXT, tier_served TEXT, input_tokens INTEGER, "
        "cached_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER, ttfb REAL, seconds REAL, "
        "status INTEGER, error TEXT, failovers INTEGER, image_tokens INTEGER);"
        "CREATE INDEX IF NOT EXISTS usage_time ON usage (t);"
    )
    #: Columns added since the first release, with their type: added to older files on open.
    ADDED = (("image_tokens", "INTEGER"),)

    @classmethod
    def in_state_dir(cls, auth_dir: Path) -> SQLiteLedger:
        from cliproxy.auth.quota import STATE_DIR

        return cls(Path(auth_dir) / STATE_DIR / FILE_NAME)

    def _setup(self, db: sqlite3.Connection) -> None:
        super()._setup(db)
        have = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
        for name, kind in self.ADDED:
            if name not in have:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it just now
                    db.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")

    @recovering
    def add(self, rows: Sequence[Row]) -> None:
        sql = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(sql, [tuple(asdict(r).values()) for r in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @recovering
    def summary(self, since: float, by: str | None = None) -> Summary:
        if by is not None and by not in _GROUP_SQL:
            raise ValueError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
        db = self.db
        total = db.execute(f"SELECT {_SUMS} FROM usage WHERE t >= ?", (since,)).fetchone()
        totals = dict(zip(TOTAL_KEYS, total, strict=True))
        rows: list[dict[str, Any]] = []
        if by in _LOCAL_TIME:
            return Summary(totals, self._by_local_time(since, by))
        if by is not None:
            group = _GROUP_SQL[by]
            order = "g" if by in ("day", "hour") else "requests DESC, g"
            for values in db.execute(f"SELECT {group} AS g, {_SUMS} FROM usage WHERE t >= ? GROUP BY g ORDER BY {order}", (since,)):
                rows.append({by: values[0], **dict(zip(TOTAL_KEYS, values[1:], strict=True))})
        return Summary(totals, rows)

    def _by_local_time(self, since: float, by: str) -> list[dict[str, Any]]:
        """Days or hours of local time. SQLite's `localtime` per row costs most of a 30-day query, so rows are
        summed per quarter hour in SQL and the quarters named here: every UTC offset (and every DST change)
        falls on a quarter hour, so a quarter never straddles two local days or hours."""
        merged: dict[str, list[int]] = {}
        sql = f"SELECT CAST(t / {_QUARTER} AS INTEGER) AS q, {_SUMS} FROM usage WHERE t >= ? GROUP BY q"
        for q, *values in self.db.execute(sql, (since,)):
            name = time.strftime(_LOCAL_TIME[by], time.localtime(q * _QUARTER))
            sums = merged.setdefault(name, [0] * len(TOTAL_KEYS))
            for n, v in enumerate(values):
                sums[n] += v
        return [{by: name, **dict(zip(TOTAL_KEYS, merged[name], strict=True))} for name in sorted(merged)]

    @recovering
    def series(self, since: float, step: float, by: Sequence[str]) -> list[dict[str, Any]]:
        if not by or isinstance(by, str) or any(b not in SERIES_GROUPS for b in by):
            raise ValueError(f"series by {by!r}: expected some of {', '.join(SERIES_GROUPS)}")
        groups = ", ".join(f"{_GROUP_SQL[b]} AS g{n}" for n, b in enumerate(by))
        keys = ", ".join(f"g{n}" for n in range(len(by)))
        sql = f"SELECT CAST((t - ?) / ? AS INTEGER) AS b, {groups}, {_SUMS} FROM usage WHERE t >= ? GROUP BY b, {keys} ORDER BY b, {keys}"
        return [
            {
                "t": since + values[0] * step,
                **dict(zip(by, values[1 : 1 + len(by)], strict=True)),
                **dict(zip(TOTAL_KEYS, values[1 + len(by) :], strict=True)),
            }
            for values in self.db.execute(sql, (since, step, since))
        ]

    @recovering
    def recent_errors(self, since: float, limit: int = 20) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(ERROR_KEYS)} FROM usage WHERE t >= ? AND (error IS NOT NULL OR status >= 400) ORDER BY t DESC LIMIT ?"
        return [dict(zip(ERROR_KEYS, values, strict=True)) for values in self.db.execute(sql, (since, limit))]

    @recovering
    def purge(self, before: float) -> int:
        return self.db.execute("DELETE FROM usage WHERE t < ?", (before,)).rowcount


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
                if not self._closing:
                    # Sleep on it: the rows of the next requests join this one's commit, and this thread wakes (and
                    # takes the GIL from the proxy) once per burst instead of once per request.
                    time.sleep(LINGER)
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
