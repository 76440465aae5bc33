"""What is PostgreSQL's own in the response store (the contract itself runs in test_store.py against
both): several hosts on one database, a database that restarts or goes away, the schema's version."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cliproxy.addons.store import pg
from cliproxy.addons.store.pg_responses import STEPS, PostgresResponseStore
from cliproxy.addons.store.responses import Conversation, item_with_id, owner_of
from cliproxy.addons.store.worker import Background, StoreUnavailable
from tests.unit.test_store import msg, response

A = owner_of(["sk-a"])


def test_hosts_on_one_database_see_each_others_records(pg_dsn):
    one, two = PostgresResponseStore(pg_dsn), PostgresResponseStore(pg_dsn)
    try:
        one.put_response(response("resp_1"))
        got = two.get_response(A, "resp_1")
        assert got is not None and got.output[0]["id"] == "msg_out_resp_1"
        assert two.find_item(A, "msg_out_resp_1") is not None
        version = one.session.run(lambda c: c.execute("SELECT version FROM cliproxy_schema WHERE component = 'responses'").fetchone())
        assert version == (len(STEPS),)
    finally:
        one.close()
        two.close()


def test_concurrent_appends_to_one_conversation_from_several_hosts_keep_every_item_in_order(pg_dsn):
    stores = [PostgresResponseStore(pg_dsn) for _ in range(4)]
    stores[0].create_conversation(Conversation("conv_1", A), [])
    errors: list[BaseException] = []

    def host(n: int) -> None:
        try:
            for k in range(10):
                assert stores[n].add_items(A, "conv_1", [item_with_id(msg(f"{n}-{k}a")), item_with_id(msg(f"{n}-{k}b"))])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        items = stores[1].list_items(A, "conv_1").items
        texts = [i["content"][0]["text"] for i in items]
        assert len(texts) == 80 and len(set(texts)) == 80
        for n in range(4):  # each host's items in the order it added them, each pair together
            mine = [t for t in texts if t.startswith(f"{n}-")]
            assert mine == [f"{n}-{k}{s}" for k in range(10) for s in "ab"]
        for i, t in enumerate(texts):
            if t.endswith("a"):
                assert texts[i + 1] == t[:-1] + "b"
    finally:
        for s in stores:
            s.close()


def test_a_restarted_database_is_used_again_without_an_error(pg_server, pg_dsn):
    s = PostgresResponseStore(pg_dsn)
    try:
        s.put_response(response("resp_1"))
        pg_server.restart()
        assert s.get_response(A, "resp_1") is not None  # the dead connection is replaced on the way
    finally:
        s.close()


def test_a_database_that_is_gone_is_store_unavailable_at_once_then_recovers(pg_server, pg_dsn):
    bg = Background(lambda: PostgresResponseStore(pg_dsn))

    async def lookup() -> object:
        return await bg.run(lambda s: s.get_response(A, "resp_1"))

    try:
        bg.submit(lambda s: s.put_response(response("resp_1")))
        assert asyncio.run(lookup()) is not None
        pg_server.stop()
        try:
            t = time.perf_counter()
            with pytest.raises(StoreUnavailable) as err:
                asyncio.run(lookup())
            assert time.perf_counter() - t < 2 and "store postgresql://" in str(err.value)
            bg.submit(lambda s: s.put_response(response("resp_2")))  # a booking that fails: logged, not raised
            bg.flush()
        finally:
            pg_server.start()
        deadline = time.time() + 5  # back without a restart (after a failed connect, calls fail at once for a second)
        while True:
            try:
                assert asyncio.run(lookup()) is not None
                break
            except StoreUnavailable:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        bg.close()


def test_unreachable_at_start_is_store_unavailable_without_the_password(pg_server):
    with pytest.raises(pg.StoreUnavailable) as err:
        PostgresResponseStore(f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port + 1}/postgres")
    assert "hunter2" not in str(err.value)


def test_after_a_failed_connect_calls_fail_at_once_for_a_moment(monkeypatch):
    """A database host that drops packets costs one connect timeout, not one per queued call."""
    from cliproxy.addons.store import pg_session

    calls = []

    def refuse(dsn: str, **kw: object) -> None:
        calls.append(dsn)
        raise pg.StoreUnavailable("store postgresql://h/db: timeout expired")

    monkeypatch.setattr(pg, "connect", refuse)
    monkeypatch.setattr(pg_session.PgSession, "_down", {})
    for _ in range(5):
        with pytest.raises(pg.StoreUnavailable, match="timeout expired"):
            PostgresResponseStore("postgresql://h/db")
    assert len(calls) == 1
    monkeypatch.setattr(pg_session, "RETRY_SECONDS", 0.0)
    pg_session.PgSession._down.clear()
    with pytest.raises(pg.StoreUnavailable):
        PostgresResponseStore("postgresql://h/db")
    assert len(calls) == 2
