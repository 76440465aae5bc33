"""The response store on PostgreSQL (`store: postgresql://…`): stored responses, conversations and their
items shared by every host, so a `previous_response_id` made through one host resolves on any other.

The same records and rules as the SQLite store (`store.sqlite`), table for table. Appends to one
conversation from several hosts are serialised by the row lock of the conversation's UPDATE, which
each append takes first; the size-cap purge runs on one host at a time (a transaction-scoped advisory
lock; the others skip it). Records are kept as JSON text, exactly as answered (jsonb would reorder keys).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from cliproxy.addons.store import pg
from cliproxy.addons.store.pg_session import PgSession
from cliproxy.addons.store.responses import Conversation, Limits, Order, Page, ResponseStore, StoredResponse, dumps, item_rows, page_of

COMPONENT = "responses"
#: Append-only (see `pg.migrate`).
STEPS = (
    """CREATE TABLE cliproxy_responses (
        owner TEXT NOT NULL, id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, store BOOLEAN NOT NULL,
        size BIGINT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (owner, id));
    CREATE INDEX cliproxy_responses_age ON cliproxy_responses (created_at);
    CREATE TABLE cliproxy_conversations (
        owner TEXT NOT NULL, id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        metadata TEXT NOT NULL, PRIMARY KEY (owner, id));
    CREATE INDEX cliproxy_conversations_age ON cliproxy_conversations (updated_at);
    CREATE TABLE cliproxy_items (
        owner TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, call_id TEXT,
        created_at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL, PRIMARY KEY (owner, scope, id));
    CREATE INDEX cliproxy_items_by_id ON cliproxy_items (owner, id);
    CREATE INDEX cliproxy_items_by_call ON cliproxy_items (owner, call_id) WHERE call_id IS NOT NULL;
    CREATE INDEX cliproxy_items_in_scope ON cliproxy_items (owner, scope, seq);
    CREATE INDEX cliproxy_items_age ON cliproxy_items (created_at) WHERE scope LIKE 'resp:%'""",
)
_REPLACE = " ON CONFLICT (owner, scope, id) DO UPDATE SET seq = EXCLUDED.seq, call_id = EXCLUDED.call_id, created_at = EXCLUDED.created_at, data = EXCLUDED.data"
_IGNORE = " ON CONFLICT (owner, scope, id) DO NOTHING"


class PostgresResponseStore(ResponseStore):
    def __init__(self, dsn: str, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.session = PgSession(dsn, COMPONENT, STEPS)
        self.session.connection()  # unreachable → StoreUnavailable now (the caller retries later)

    def _cutoff(self, now: float | None = None) -> float:
        return (now if now is not None else time.time()) - self.limits.retention_seconds

    def _read(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self.session.run(lambda c: c.execute(sql, args).fetchone())

    def close(self) -> None:
        self.session.close()

    # -- responses ----------------------------------------------------------------------------------
    def put_response(self, response: StoredResponse) -> None:
        record = response.record()

        def write(c: Any) -> None:
            with c.transaction():
                c.execute(
                    "INSERT INTO cliproxy_responses VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (owner, id) DO UPDATE SET"
                    " created_at = EXCLUDED.created_at, store = EXCLUDED.store, size = EXCLUDED.size, record = EXCLUDED.record",
                    (response.owner, response.id, response.created_at, response.store, len(record), record),
                )
                if not response.store:
                    return
                new_items = [*response.request_items, *response.output]
                if response.conversation is not None:
                    self._append(c, response.owner, response.conversation, new_items, response.created_at)
                else:
                    self._index(c, response.owner, f"resp:{response.id}", new_items, response.created_at)

        self.session.run(write)

    def _index(
        self, c: Any, owner: str, scope: str, items: list[dict[str, Any]], now: float, start: int = 0, conflict: str = _REPLACE
    ) -> None:
        rows = item_rows(owner, scope, items, now, start)
        if rows:
            with c.cursor() as cur:
                cur.executemany("INSERT INTO cliproxy_items VALUES (%s, %s, %s, %s, %s, %s, %s)" + conflict, rows)

    def _append(self, c: Any, owner: str, conversation_id: str, items: list[dict[str, Any]], now: float) -> bool:
        scope = f"conv:{conversation_id}"
        # the UPDATE locks the conversation's row until commit: appends from other hosts wait, then see these items
        if (
            c.execute(
                "UPDATE cliproxy_conversations SET updated_at = %s WHERE owner = %s AND id = %s", (now, owner, conversation_id)
            ).rowcount
            == 0
        ):
            return False
        (top,) = c.execute("SELECT COALESCE(MAX(seq), -1) FROM cliproxy_items WHERE owner = %s AND scope = %s", (owner, scope)).fetchone()
        self._index(c, owner, scope, items, now, top + 1, conflict=_IGNORE)
        return True

    def get_response(self, owner: str, response_id: str) -> StoredResponse | None:
        row = self._read(
            "SELECT created_at, store, record FROM cliproxy_responses WHERE owner = %s AND id = %s AND created_at >= %s",
            (owner, response_id, self._cutoff()),
        )
        if row is None:
            return None
        created_at, store, record = row
        return StoredResponse.from_record(response_id, owner, created_at, store, record)

    def delete_response(self, owner: str, response_id: str) -> bool:
        def write(c: Any) -> bool:
            with c.transaction():
                gone = c.execute(
                    "DELETE FROM cliproxy_responses WHERE owner = %s AND id = %s AND created_at >= %s", (owner, response_id, self._cutoff())
                ).rowcount
                c.execute("DELETE FROM cliproxy_items WHERE owner = %s AND scope = %s", (owner, f"resp:{response_id}"))
            return gone > 0

        return self.session.run(write)

    def find_item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        row = self._read(
            "SELECT data FROM cliproxy_items WHERE owner = %s AND id = %s AND (scope LIKE 'conv:%%' OR created_at >= %s) "
            "ORDER BY created_at DESC LIMIT 1",
            (owner, item_id, self._cutoff()),
        )
        return json.loads(row[0]) if row else None

    def find_call(self, owner: str, call_id: str) -> dict[str, Any] | None:
        row = self._read(
            "SELECT data FROM cliproxy_items WHERE owner = %s AND call_id = %s AND (scope LIKE 'conv:%%' OR created_at >= %s) "
            "ORDER BY created_at DESC LIMIT 1",
            (owner, call_id, self._cutoff()),
        )
        return json.loads(row[0]) if row else None

    # -- conversations ----------------------------------------------------------------------------
    def create_conversation(self, conversation: Conversation, items: list[dict[str, Any]]) -> None:
        def write(c: Any) -> None:
            with c.transaction():
                c.execute(
                    "INSERT INTO cliproxy_conversations VALUES (%s, %s, %s, %s, %s) ON CONFLICT (owner, id) DO UPDATE SET"
                    " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, metadata = EXCLUDED.metadata",
                    (conversation.owner, conversation.id, conversation.created_at, conversation.created_at, dumps(conversation.metadata)),
                )
                self._index(c, conversation.owner, f"conv:{conversation.id}", items, conversation.created_at, conflict=_IGNORE)

        self.session.run(write)

    def _conversation(self, c: Any, owner: str, conversation_id: str) -> Conversation | None:
        row = c.execute(
            "SELECT created_at, metadata FROM cliproxy_conversations WHERE owner = %s AND id = %s AND updated_at >= %s",
            (owner, conversation_id, self._cutoff()),
        ).fetchone()
        return Conversation(conversation_id, owner, row[0], json.loads(row[1])) if row else None

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        return self.session.run(lambda c: self._conversation(c, owner, conversation_id))

    def update_conversation(self, owner: str, conversation_id: str, metadata: Mapping[str, Any]) -> Conversation | None:
        def write(c: Any) -> Conversation | None:
            with c.transaction():
                if self._conversation(c, owner, conversation_id) is None:
                    return None
                c.execute(
                    "UPDATE cliproxy_conversations SET metadata = %s, updated_at = %s WHERE owner = %s AND id = %s",
                    (dumps(dict(metadata)), time.time(), owner, conversation_id),
                )
                return self._conversation(c, owner, conversation_id)

        return self.session.run(write)

    def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        def write(c: Any) -> bool:
            with c.transaction():
                known = self._conversation(c, owner, conversation_id) is not None
                c.execute("DELETE FROM cliproxy_conversations WHERE owner = %s AND id = %s", (owner, conversation_id))
                c.execute("DELETE FROM cliproxy_items WHERE owner = %s AND scope = %s", (owner, f"conv:{conversation_id}"))
            return known

        return self.session.run(write)

    def add_items(self, owner: str, conversation_id: str, items: list[dict[str, Any]]) -> bool:
        def write(c: Any) -> bool:
            with c.transaction():
                if self._conversation(c, owner, conversation_id) is None:
                    return False
                return self._append(c, owner, conversation_id, items, time.time())

        return self.session.run(write)

    def list_items(
        self, owner: str, conversation_id: str, *, after: str | None = None, limit: int | None = None, order: Order = "asc"
    ) -> Page | None:
        def read(c: Any) -> Page | None:
            if self._conversation(c, owner, conversation_id) is None:
                return None
            rows = c.execute(
                "SELECT data FROM cliproxy_items WHERE owner = %s AND scope = %s ORDER BY seq", (owner, f"conv:{conversation_id}")
            ).fetchall()
            return page_of([json.loads(r[0]) for r in rows], after, limit, order)

        return self.session.run(read)

    def get_item(self, owner: str, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        def read(c: Any) -> dict[str, Any] | None:
            if self._conversation(c, owner, conversation_id) is None:
                return None
            row = c.execute(
                "SELECT data FROM cliproxy_items WHERE owner = %s AND scope = %s AND id = %s", (owner, f"conv:{conversation_id}", item_id)
            ).fetchone()
            return json.loads(row[0]) if row else None

        return self.session.run(read)

    def delete_item(self, owner: str, conversation_id: str, item_id: str) -> bool:
        def write(c: Any) -> bool:
            with c.transaction():
                if self._conversation(c, owner, conversation_id) is None:
                    return False
                return (
                    c.execute(
                        "DELETE FROM cliproxy_items WHERE owner = %s AND scope = %s AND id = %s",
                        (owner, f"conv:{conversation_id}", item_id),
                    ).rowcount
                    > 0
                )

        return self.session.run(write)

    # -- housekeeping -------------------------------------------------------------------------------
    def purge(self, now: float | None = None) -> int:
        cutoff = self._cutoff(now)

        def write(c: Any) -> int:
            with c.transaction():
                if not c.execute("SELECT pg_try_advisory_xact_lock(%s)", (pg.lock_key("responses", "purge"),)).fetchone()[0]:
                    return 0  # another host is purging right now
                gone = c.execute("DELETE FROM cliproxy_responses WHERE created_at < %s", (cutoff,)).rowcount
                c.execute("DELETE FROM cliproxy_items WHERE scope LIKE 'resp:%%' AND created_at < %s", (cutoff,))
                convs = c.execute("DELETE FROM cliproxy_conversations WHERE updated_at < %s RETURNING owner, id", (cutoff,)).fetchall()
                if convs:
                    with c.cursor() as cur:
                        cur.executemany("DELETE FROM cliproxy_items WHERE owner = %s AND scope = %s", [(o, f"conv:{i}") for o, i in convs])
                (total,) = c.execute("SELECT COALESCE(SUM(size), 0)::BIGINT FROM cliproxy_responses").fetchone()
                if total > self.limits.max_bytes:
                    # the oldest responses whose removal brings the total under the cap (a running sum of the newer ones)
                    drop = c.execute(
                        "SELECT owner, id FROM (SELECT owner, id, SUM(size) OVER (ORDER BY created_at DESC, owner, id) AS newer"
                        " FROM cliproxy_responses) s WHERE newer > %s",
                        (self.limits.max_bytes,),
                    ).fetchall()
                    with c.cursor() as cur:
                        cur.executemany("DELETE FROM cliproxy_responses WHERE owner = %s AND id = %s", drop)
                        cur.executemany("DELETE FROM cliproxy_items WHERE owner = %s AND scope = %s", [(o, f"resp:{r}") for o, r in drop])
                    gone += len(drop)
            return gone

        return self.session.run(write)
