"""The usage ledger on PostgreSQL (`store: postgresql://…`): every host's rows in one table, so that
`cliproxy usage` and the status page on any host sum them all. Same rows and same answers as the
SQLite ledger (the same sums, `ledger._SUMS`; tests run the same cases against both); written by the
same `Writer` thread, which keeps rows in memory while the database is away and writes them when it
returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import astuple
from datetime import datetime
from pathlib import Path
from typing import Any

from cliproxy.addons.store.ledger import _SUMS, COLUMNS, ERROR_KEYS, GROUPINGS, SERIES_GROUPS, TOTAL_KEYS, Row, Summary, UsageLedger
from cliproxy.addons.store.pg_session import PgSession

COMPONENT = "usage"
TABLE = "cliproxy_usage"
#: Append-only (see `pg.migrate`). Token counts are INTEGER so that their SUMs are BIGINT (exact
#: integers, as in SQLite); texts sort bytewise (COLLATE "C"), as SQLite sorts them.
STEPS = (
    f"""CREATE TABLE {TABLE} (
        t DOUBLE PRECISION NOT NULL, account TEXT COLLATE "C", key TEXT COLLATE "C", route TEXT, format TEXT,
        client_model TEXT, model TEXT COLLATE "C", effort TEXT, tier_asked TEXT, tier_served TEXT,
        input_tokens INTEGER, cached_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER,
        ttfb DOUBLE PRECISION, seconds DOUBLE PRECISION, status INTEGER, error TEXT, failovers INTEGER,
        image_tokens INTEGER);
    CREATE INDEX {TABLE}_time ON {TABLE} (t)""",
)
#: Days and hours are the reader's local ones, as SQLite's 'localtime' gives them (the session's TimeZone),
#: written by casts under DateStyle ISO (twice as fast as to_char over a month of rows).
_GROUP_SQL = {
    "account": "COALESCE(account, '-')",
    "model": "COALESCE(model, '-')",
    "key": "COALESCE(key, '-')",
    "day": "to_timestamp(t)::date::text",
    "hour": "left(to_timestamp(t)::timestamp::text, 13) || ':00'",
}


def local_zone() -> str:
    """This process's time zone as PostgreSQL names it: the IANA name of `TZ` or /etc/localtime, else
    the current UTC offset (a POSIX zone, whose sign is inverted)."""
    from zoneinfo import ZoneInfo

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    if not candidates[0]:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    for name in candidates:
        if name and not name.startswith("/") and ".." not in name:
            try:
                ZoneInfo(name)
                return name
            except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
                pass
    offset = datetime.now().astimezone().utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign, minutes = ("+", minutes) if minutes >= 0 else ("-", -minutes)
    inverted = "-" if sign == "+" else "+"
    return f"<{sign}{minutes // 60:02d}{minutes % 60:02d}>{inverted}{minutes // 60:02d}:{minutes % 60:02d}"


class PostgresLedger(UsageLedger):
    """The ledger in table `cliproxy_usage`; one connection, re-opened when the database comes back."""

    def __init__(self, dsn: str) -> None:
        zone = local_zone().replace("'", "")
        self.session = PgSession(dsn, COMPONENT, STEPS, setup=(f"SET TIME ZONE '{zone}'", "SET DateStyle = 'ISO, YMD'"))
        self.session.connection()  # unreachable → StoreUnavailable now (the writer retries)

    def add(self, rows: Sequence[Row]) -> None:
        sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
        values = [astuple(r) for r in rows]

        def write(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, values)

        self.session.run(write)

    def summary(self, since: float, by: str | None = None) -> Summary:
        if by is not None and by not in GROUPINGS:
            raise ValueError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")

        def read(conn: Any) -> Summary:
            total = conn.execute(f"SELECT {_SUMS} FROM {TABLE} WHERE t >= %s", (since,)).fetchone()
            rows: list[dict[str, Any]] = []
            if by is not None:
                order = "g" if by in ("day", "hour") else "requests DESC, g"
                sql = f"SELECT {_GROUP_SQL[by]} AS g, {_SUMS} FROM {TABLE} WHERE t >= %s GROUP BY g ORDER BY {order}"
                rows = [{by: values[0], **dict(zip(TOTAL_KEYS, values[1:], strict=True))} for values in conn.execute(sql, (since,))]
            return Summary(dict(zip(TOTAL_KEYS, total, strict=True)), rows)

        return self.session.run(read)

    def series(self, since: float, step: float, by: Sequence[str]) -> list[dict[str, Any]]:
        if not by or isinstance(by, str) or any(b not in SERIES_GROUPS for b in by):
            raise ValueError(f"series by {by!r}: expected some of {', '.join(SERIES_GROUPS)}")
        groups = ", ".join(f"{_GROUP_SQL[b]} AS g{n}" for n, b in enumerate(by))
        keys = ", ".join(f"g{n}" for n in range(len(by)))
        sql = (
            f"SELECT floor((t - %s) / %s)::BIGINT AS b, {groups}, {_SUMS} FROM {TABLE} WHERE t >= %s GROUP BY b, {keys} ORDER BY b, {keys}"
        )

        def read(conn: Any) -> list[dict[str, Any]]:
            return [
                {
                    "t": since + values[0] * step,
                    **dict(zip(by, values[1 : 1 + len(by)], strict=True)),
                    **dict(zip(TOTAL_KEYS, values[1 + len(by) :], strict=True)),
                }
                for values in conn.execute(sql, (since, step, since))
            ]

        return self.session.run(read)

    def recent_errors(self, since: float, limit: int = 20) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(ERROR_KEYS)} FROM {TABLE} WHERE t >= %s AND (error IS NOT NULL OR status >= 400) ORDER BY t DESC LIMIT %s"
        return self.session.run(lambda conn: [dict(zip(ERROR_KEYS, values, strict=True)) for values in conn.execute(sql, (since, limit))])

    def purge(self, before: float) -> int:
        return self.session.run(lambda conn: conn.execute(f"DELETE FROM {TABLE} WHERE t < %s", (before,)).rowcount)

    def close(self) -> None:
        self.session.close()


def open_ledger(dsn: str | None, auth_dir: Path) -> UsageLedger:
    """The ledger the config names: PostgreSQL with a `store` DSN, else SQLite in the state folder."""
    if dsn:
        return PostgresLedger(dsn)
    from cliproxy.addons.store.ledger import SQLiteLedger

    return SQLiteLedger.in_state_dir(auth_dir)
