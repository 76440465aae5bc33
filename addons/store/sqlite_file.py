"""One SQLite file in the state folder, opened the way every cliproxy store opens it (pure; standard library).

WAL mode lets readers in other processes (`cliproxy usage`, a second proxy on the same auth dir) go on
while one writes; the file is private (0600, folder 0700). A file that is not a database, or is damaged,
is moved aside (`*.corrupt-<time>`, with its `-wal`/`-shm`) with one log line and a new one started:
what a store holds is worth less than a proxy that keeps serving. A busy or locked file is not damage;
it passes by itself, so it is only reported.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A damaged or foreign file, as opposed to a busy or locked one (which passes by itself)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


class SQLiteFile:
    """Base of the SQLite stores: the connection, its setup, and recovery from a damaged file.

    Subclasses set `WHAT` (named in the log line), `BUSY_SECONDS` and `SCHEMA`, and override `_setup` to
    migrate older files. Operations go through `db`; wrap them in `recovering`."""

    WHAT: ClassVar[str] = "database"
    BUSY_SECONDS: ClassVar[float] = 5.0
    SCHEMA: ClassVar[str] = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            self._replace(exc)

    def _setup(self, db: sqlite3.Connection) -> None:
        """Create what is missing (runs on every new connection)."""
        db.executescript(self.SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        try:
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)  # conversations and usage are private
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process; WAL keeps it consistent
            self._setup(db)
        except BaseException:
            db.close()
            raise
        return db

    def _replace(self, exc: Exception) -> None:
        """Move a damaged database aside and start a new one."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        logger.error("cliproxy: the %s %s is damaged (%s); moved it to %s and started a new one", self.WHAT, self.path, exc, aside.name)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self._db = self._connect()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


def recovering[T](method: Callable[..., T]) -> Callable[..., T]:
    """Run a store operation; on a damaged database, move the file aside, start a new one, and re-raise
    (the operation failed; the next one works on the new file)."""

    @functools.wraps(method)
    def run(self: SQLiteFile, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                self._replace(exc)
            raise

    return run
