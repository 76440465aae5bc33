"""The response store on SQLite (standard library): one file in the state folder beside the accounts,
shared by every process that uses the auth dir.

Writes take the lock at once (`BEGIN IMMEDIATE`) and wait up to `BUSY_SECONDS` for another process's
write to end. Opening, WAL and moving a damaged file aside are `sqlite_file.SQLiteFile`'s, shared with
the usage ledger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cliproxy.addons.store.responses import Conversation, Limits, Order, Page, ResponseStore, StoredResponse, dumps, item_rows, page_of
from cliproxy.addons.store.sqlite_file import SQLiteFile, recovering

logger = logging.getLogger(__name__)

FILE_NAME = "cliproxy.sqlite3"
BUSY_SECONDS = 5.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    owner TEXT NOT NULL, id TEXT NOT NULL, created_at REAL NOT NULL, store INTEGER NOT NULL,
    size INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (owner, id));
CREATE INDEX IF NOT EXISTS responses_age ON responses (created_at);
CREATE TABLE IF NOT EXISTS conversations (
    owner TEXT NOT NULL, id TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    metadata TEXT NOT NULL, PRIMARY KEY (owner, id));
CREATE TABLE IF NOT EXISTS items (
    owner TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, call_id TEXT,
    created_at REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (owner, scope, id));
CREATE INDEX IF NOT EXISTS items_by_id ON items (owner, id);
CREATE INDEX IF NOT EXISTS items_by_call ON items (owner, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_in_scope ON items (owner, scope, seq);
"""


class SQLiteStore(SQLiteFile, ResponseStore):
    WHAT = "response store"
    BUSY_SECONDS = BUSY_SECONDS
    SCHEMA = SCHEMA

    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        super().__init__(path)

    @classmethod
    def in_state_dir(cls, auth_dir: Path, limits: Limits | None = None) -> SQLiteStore:
        from cliproxy.auth.quota import STATE_DIR

        return cls(auth_dir / STATE_DIR / FILE_NAME, limits)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _cutoff(self, now: float | None = None) -> float:
        return (now if now is not None else time.time()) - self.limits.retention_seconds

    # -- responses ----------------------------------------------------------------------------------
    @recovering
    def put_response(self, response: StoredResponse) -> None:
        record = response.record()
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (response.owner, response.id, response.created_at, int(response.store), len(record), record),
            )
            if not response.store:
                return
            new_items = [*response.request_items, *response.output]
            if response.conversation is not None:
                self._append(db, response.owner, response.conversation, new_items, response.created_at)
            else:
                self._index(db, response.owner, f"resp:{response.id}", new_items, response.created_at)

    def _index(
        self,
        db: sqlite3.Connection,
        owner: str,
        scope: str,
        items: list[dict[str, Any]],
        now: float,
        start: int = 0,
        verb: str = "OR REPLACE",
    ) -> None:
        rows = item_rows(owner, scope, items, now, start)
        db.executemany(f"INSERT {verb} INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def _append(self, db: sqlite3.Connection, owner: str, conversation_id: str, items: list[dict[str, Any]], now: float) -> bool:
        scope = f"conv:{conversation_id}"
        if db.execute("UPDATE conversations SET updated_at = ? WHERE owner = ? AND id = ?", (now, owner, conversation_id)).rowcount == 0:
            return False
        (top,) = db.execute("SELECT COALESCE(MAX(seq), -1) FROM items WHERE owner = ? AND scope = ?", (owner, scope)).fetchone()
        self._index(db, owner, scope, items, now, top + 1, verb="OR IGNORE")
        return True

    @recovering
    def get_response(self, owner: str, response_id: str) -> StoredResponse | None:
        row = self.db.execute(
            "SELECT created_at, store, record FROM responses WHERE owner = ? AND id = ? AND created_at >= ?",
            (owner, response_id, self._cutoff()),
        ).fetchone()
        if row is None:
            return None
        created_at, store, record = row
        return StoredResponse.from_record(response_id, owner, created_at, store, record)

    @recovering
    def delete_response(self, owner: str, response_id: str) -> bool:
        with self._write() as db:
            gone = db.execute(
                "DELETE FROM responses WHERE owner = ? AND id = ? AND created_at >= ?", (owner, response_id, self._cutoff())
            ).rowcount
            db.execute("DELETE FROM items WHERE owner = ? AND scope = ?", (owner, f"resp:{response_id}"))
        return gone > 0

    @recovering
    def find_item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT data FROM items WHERE owner = ? AND id = ? AND (scope LIKE 'conv:%' OR created_at >= ?) "
            "ORDER BY created_at DESC LIMIT 1",
            (owner, item_id, self._cutoff()),
        ).fetchone()
        return json.loads(row[0]) if row else None

    @recovering
    def find_call(self, owner: str, call_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT data FROM items WHERE owner = ? AND call_id = ? AND (scope LIKE 'conv:%' OR created_at >= ?) "
            "ORDER BY created_at DESC LIMIT 1",
            (owner, call_id, self._cutoff()),
        ).fetchone()
        return json.loads(row[0]) if row else None

    # -- conversations ----------------------------------------------------------------------------
    @recovering
    def create_conversation(self, conversation: Conversation, items: list[dict[str, Any]]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?, ?)",
                (conversation.owner, conversation.id, conversation.created_at, conversation.created_at, dumps(conversation.metadata)),
            )
            self._index(db, conversation.owner, f"conv:{conversation.id}", items, conversation.created_at, verb="OR IGNORE")

    def _conversation(self, db: sqlite3.Connection, owner: str, conversation_id: str) -> Conversation | None:
        row = db.execute(
            "SELECT created_at, metadata FROM conversations WHERE owner = ? AND id = ? AND updated_at >= ?",
            (owner, conversation_id, self._cutoff()),
        ).fetchone()
        return Conversation(conversation_id, owner, row[0], json.loads(row[1])) if row else None

    @recovering
    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        return self._conversation(self.db, owner, conversation_id)

    @recovering
    def update_conversation(self, owner: str, conversation_id: str, metadata: Mapping[str, Any]) -> Conversation | None:
        with self._write() as db:
            if self._conversation(db, owner, conversation_id) is None:
                return None
            db.execute(
                "UPDATE conversations SET metadata = ?, updated_at = ? WHERE owner = ? AND id = ?",
                (dumps(dict(metadata)), time.time(), owner, conversation_id),
            )
            return self._conversation(db, owner, conversation_id)

    @recovering
    def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        with self._write() as db:
            known = self._conversation(db, owner, conversation_id) is not None
            db.execute("DELETE FROM conversations WHERE owner = ? AND id = ?", (owner, conversation_id))
            db.execute("DELETE FROM items WHERE owner = ? AND scope = ?", (owner, f"conv:{conversation_id}"))
        return known

    @recovering
    def add_items(self, owner: str, conversation_id: str, items: list[dict[str, Any]]) -> bool:
        with self._write() as db:
            if self._conversation(db, owner, conversation_id) is None:
                return False
            return self._append(db, owner, conversation_id, items, time.time())

    @recovering
    def list_items(
        self, owner: str, conversation_id: str, *, after: str | None = None, limit: int | None = None, order: Order = "asc"
    ) -> Page | None:
        db = self.db
        if self._conversation(db, owner, conversation_id) is None:
            return None
        rows = db.execute(
            "SELECT data FROM items WHERE owner = ? AND scope = ? ORDER BY seq", (owner, f"conv:{conversation_id}")
        ).fetchall()
        return page_of([json.loads(r[0]) for r in rows], after, limit, order)

    @recovering
    def get_item(self, owner: str, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        db = self.db
        if self._conversation(db, owner, conversation_id) is None:
            return None
        row = db.execute(
            "SELECT data FROM items WHERE owner = ? AND scope = ? AND id = ?", (owner, f"conv:{conversation_id}", item_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    @recovering
    def delete_item(self, owner: str, conversation_id: str, item_id: str) -> bool:
        with self._write() as db:
            if self._conversation(db, owner, conversation_id) is None:
                return False
            return (
                db.execute(
                    "DELETE FROM items WHERE owner = ? AND scope = ? AND id = ?", (owner, f"conv:{conversation_id}", item_id)
                ).rowcount
                > 0
            )

    # -- housekeeping -------------------------------------------------------------------------------
    @recovering
    def purge(self, now: float | None = None) -> int:
        cutoff = self._cutoff(now)
        with self._write() as db:
            old = [r[0] for r in db.execute("SELECT id FROM responses WHERE created_at < ?", (cutoff,))]
            db.execute("DELETE FROM responses WHERE created_at < ?", (cutoff,))
            db.execute("DELETE FROM items WHERE scope LIKE 'resp:%' AND created_at < ?", (cutoff,))
            convs = db.execute("SELECT owner, id FROM conversations WHERE updated_at < ?", (cutoff,)).fetchall()
            db.executemany("DELETE FROM items WHERE owner = ? AND scope = ?", [(o, f"conv:{c}") for o, c in convs])
            db.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,))
            gone = len(old)
            (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()
            if total > self.limits.max_bytes:
                drop, freed = [], 0
                for owner, rid, size in db.execute("SELECT owner, id, size FROM responses ORDER BY created_at"):
                    if total - freed <= self.limits.max_bytes:
                        break
                    drop.append((owner, rid))
                    freed += size
                db.executemany("DELETE FROM responses WHERE owner = ? AND id = ?", drop)
                db.executemany("DELETE FROM items WHERE owner = ? AND scope = ?", [(o, f"resp:{r}") for o, r in drop])
                gone += len(drop)
        return gone
