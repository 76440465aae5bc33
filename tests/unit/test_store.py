"""The contract of the response store, run against every implementation (`IMPLEMENTATIONS`: SQLite, and
PostgreSQL on a real server, which skips without one). Then what is SQLite's own: one file shared by
processes, WAL, damaged files moved aside."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cliproxy.addons.store.pg_responses import PostgresResponseStore
from cliproxy.addons.store.responses import (
    LOOPBACK,
    Conversation,
    Limits,
    ResponseStore,
    StoredResponse,
    is_minted,
    item_with_id,
    owner_of,
    without_minted_id,
)
from cliproxy.addons.store.sqlite import FILE_NAME, SQLiteStore

IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest, Path, Limits], ResponseStore]] = {
    "sqlite": lambda request, tmp, limits: SQLiteStore(tmp / FILE_NAME, limits),
    "postgres": lambda request, tmp, limits: PostgresResponseStore(request.getfixturevalue("pg_dsn"), limits),
}
A, B = owner_of(["sk-a"]), owner_of(["sk-b"])


@pytest.fixture(params=list(IMPLEMENTATIONS))
def make(request, tmp_path):
    made: list[ResponseStore] = []

    def factory(limits: Limits | None = None) -> ResponseStore:
        made.append(IMPLEMENTATIONS[request.param](request, tmp_path, limits or Limits()))
        return made[-1]

    yield factory
    for s in made:
        s.close()


def msg(text: str, role: str = "user", **kw) -> dict:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}], **kw}


def response(rid: str, owner: str = A, *, new: list[dict] | None = None, context: list[dict] | None = None, **kw) -> StoredResponse:
    new = [item_with_id(i) for i in (new if new is not None else [msg("hi")])]
    output = kw.pop(
        "output", [{"id": f"msg_out_{rid}", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo"}]}]
    )
    return StoredResponse(
        rid,
        owner,
        kw.pop("created_at", time.time()),
        kw.pop("store", True),
        "gpt-5.5",
        kw.pop("instructions", "Be brief."),
        [*(context or []), *new],
        len(new),
        output,
        {"total_tokens": 3},
        {"id": rid, "status": "completed"},
        **kw,
    )


def test_owner_identity():
    assert owner_of([]) == owner_of([""]) == LOOPBACK
    assert owner_of(["sk-a"]) == owner_of(["sk-a", "other"]) != owner_of(["sk-b"])
    assert "sk-a" not in owner_of(["sk-a"]) and len(owner_of(["sk-a"])) == len("key:") + 16


def test_minted_ids_are_recognised_and_dropped_upstream():
    item = item_with_id(msg("x"))
    assert item["id"].startswith("msg_cp") and is_minted(item["id"])
    assert "id" not in without_minted_id(item)
    assert item_with_id({"type": "function_call_output", "call_id": "c", "output": "o"})["id"].startswith("fco_cp")
    kept = msg("x", id="msg_abc")
    assert item_with_id(kept) is kept and without_minted_id(kept) is kept


def test_response_round_trip_and_owners(make):
    s = make()
    rec = response("resp_1", previous_response_id="resp_0")
    s.put_response(rec)
    got = s.get_response(A, "resp_1")
    assert got is not None and got.input == rec.input and got.output == rec.output and got.usage == {"total_tokens": 3}
    assert got.instructions == "Be brief." and got.previous_response_id == "resp_0" and got.store
    assert got.request_items == rec.input
    assert s.get_response(B, "resp_1") is None  # another key's id is unknown
    assert s.get_response(A, "resp_nope") is None


def test_items_found_by_id_and_call_id(make):
    s = make()
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
    s.put_response(response("resp_1", output=[{"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAA", "summary": []}, call]))
    assert s.find_item(A, "rs_1")["encrypted_content"] == "gAAA"
    assert s.find_call(A, "call_1") == call
    assert s.find_item(A, "fc_1") == call
    assert s.find_item(B, "rs_1") is None and s.find_call(B, "call_1") is None
    assert s.find_item(A, s.get_response(A, "resp_1").input[0]["id"])["content"][0]["text"] == "hi"  # input items too


def test_store_false_is_a_tombstone(make):
    s = make()
    s.put_response(StoredResponse("resp_t", A, store=False))
    got = s.get_response(A, "resp_t")
    assert got is not None and not got.store and got.input == [] and got.output == []


def test_delete_response(make):
    s = make()
    s.put_response(response("resp_1"))
    assert not s.delete_response(B, "resp_1")
    assert s.delete_response(A, "resp_1")
    assert s.get_response(A, "resp_1") is None and s.find_item(A, "msg_out_resp_1") is None
    assert not s.delete_response(A, "resp_1")


def test_retention(make):
    s = make(Limits(retention_seconds=3600))
    s.put_response(response("resp_old", created_at=time.time() - 7200))
    s.put_response(response("resp_new"))
    assert s.get_response(A, "resp_old") is None and s.find_item(A, "msg_out_resp_old") is None
    assert s.purge() == 1
    assert s.get_response(A, "resp_new") is not None


def test_size_cap_drops_oldest_first(make):
    s = make(Limits(max_bytes=10_000))
    big = "x" * 3000
    for n in range(6):
        s.put_response(response(f"resp_{n}", new=[msg(big)], created_at=time.time() - 100 + n))
    assert s.purge() >= 3
    kept = [n for n in range(6) if s.get_response(A, f"resp_{n}") is not None]
    assert kept and kept == list(range(6 - len(kept), 6)) and len(kept) <= 3


def test_conversations(make):
    s = make()
    conv = Conversation("conv_1", A, metadata={"topic": "x"})
    first = [item_with_id(msg("one"))]
    s.create_conversation(conv, first)
    assert s.get_conversation(A, "conv_1").metadata == {"topic": "x"}
    assert s.get_conversation(B, "conv_1") is None and s.list_items(B, "conv_1") is None
    more = [item_with_id(msg("two")), item_with_id(msg("three"))]
    assert s.add_items(A, "conv_1", more) and not s.add_items(B, "conv_1", more) and not s.add_items(A, "conv_nope", more)
    texts = lambda page: [i["content"][0]["text"] for i in page.items]  # noqa: E731
    assert texts(s.list_items(A, "conv_1")) == ["one", "two", "three"]
    page = s.list_items(A, "conv_1", limit=2, order="desc")
    assert texts(page) == ["three", "two"] and page.has_more
    assert texts(s.list_items(A, "conv_1", after=page.items[-1]["id"], limit=2, order="desc")) == ["one"]
    assert s.get_item(A, "conv_1", more[0]["id"]) == more[0] and s.get_item(B, "conv_1", more[0]["id"]) is None
    assert s.delete_item(A, "conv_1", more[0]["id"]) and not s.delete_item(A, "conv_1", more[0]["id"])
    assert texts(s.list_items(A, "conv_1")) == ["one", "three"]
    assert s.update_conversation(A, "conv_1", {"topic": "y"}).metadata == {"topic": "y"}
    assert s.update_conversation(B, "conv_1", {"topic": "z"}) is None
    assert not s.delete_conversation(B, "conv_1") and s.delete_conversation(A, "conv_1")
    assert s.get_conversation(A, "conv_1") is None and s.list_items(A, "conv_1") is None


def test_response_in_a_conversation_appends_its_items(make):
    s = make()
    s.create_conversation(Conversation("conv_1", A), [item_with_id(msg("earlier"))])
    s.put_response(response("resp_1", new=[msg("now")], conversation="conv_1"))
    items = s.list_items(A, "conv_1").items
    assert [i.get("role") for i in items] == ["user", "user", "assistant"]
    assert items[-1]["id"] == "msg_out_resp_1"


# -- SQLite's own -------------------------------------------------------------------------------------


def test_sqlite_is_shared_between_connections_and_uses_wal(tmp_path):
    one, two = SQLiteStore(tmp_path / FILE_NAME), SQLiteStore(tmp_path / FILE_NAME)
    one.put_response(response("resp_1"))
    assert two.get_response(A, "resp_1") is not None  # another process on the same auth dir sees it
    assert one.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o077 == 0
    one.close(), two.close()


def test_sqlite_in_state_dir(tmp_path):
    s = SQLiteStore.in_state_dir(tmp_path)
    assert s.path == tmp_path / ".cliproxy-state" / FILE_NAME and s.path.exists()
    s.close()


def test_sqlite_damaged_file_is_moved_aside(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_bytes(b"this is not a database" * 100)
    s = SQLiteStore(path)
    s.put_response(response("resp_1"))
    assert s.get_response(A, "resp_1") is not None
    assert [p.name for p in tmp_path.glob(f"{FILE_NAME}.corrupt-*")]
    s.close()


def test_sqlite_damage_while_running_starts_a_new_file(tmp_path):
    path = tmp_path / FILE_NAME
    s = SQLiteStore(path)
    s.put_response(response("resp_1"))
    s.close()
    s = SQLiteStore(path)
    s.db.close()  # the file goes bad under a running store
    path.write_bytes(b"\0garbage" * 2000)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    s._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    with pytest.raises(sqlite3.DatabaseError):
        s.get_response(A, "resp_1")
    s.put_response(response("resp_2"))  # the next operation works on a new file
    assert s.get_response(A, "resp_2") is not None
    s.close()
