"""Accounts on PostgreSQL (a real server; skips without one): rows, state merging, and refreshes that
spend each refresh token once across every process, including one that dies mid-exchange."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cliproxy.addons.store import pg
from cliproxy.addons.store.pg_accounts import PgAccounts, merge_rests, replay, valid_name
from cliproxy.auth.refresh import RefreshError
from cliproxy.auth.store import STATUS_KEY, load_accounts
from tests.fakes.oauth_server import FakeOAuthServer

DAY = 86400
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def srv():
    with FakeOAuthServer(access_ttl=10 * DAY) as server:
        yield server


@pytest.fixture
def store(pg_dsn: str):
    s = PgAccounts(pg_dsn)
    yield s
    s.close()


def put_due(srv: FakeOAuthServer, store: PgAccounts, tmp: Path, email: str = "user@example.com") -> str:
    """An account 10 days old with 5 minutes left (due for a refresh), stored in the database."""
    path = srv.make_account(tmp / "auth", email=email, expires_in=300, age=10 * DAY)
    account = load_accounts(path.parent)[[a.name for a in load_accounts(path.parent)].index(path.name)]
    assert store.put(account.name, account.data)
    return account.name


@pytest.mark.parametrize(
    ("name", "ok"),
    [("codex-a@b.c-plus.json", True), ("../x.json", False), (".hidden.json", False), ("a/b.json", False), ("x.txt", False), ("", False)],
)
def test_account_names_are_plain_file_names(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


@pytest.mark.parametrize(
    ("old", "new", "merged"),
    [
        ({}, {"*": 200.0}, {"*": 200.0}),
        ({"*": 200.0}, {}, {"*": 200.0}),  # a host that has not seen the rest does not erase it
        ({"m": 300.0}, {"m": 200.0}, {"m": 300.0}),  # the later end wins
        ({"m": 50.0}, {"x": 150.0}, {"x": 150.0}),  # rests that ended are dropped
        ({"m": True}, {"m": "soon"}, {}),  # not numbers: ignored
    ],
)
def test_rests_of_two_hosts_merge_to_the_later_end(old, new, merged) -> None:
    assert merge_rests(old, new, at=100.0) == merged


def test_accounts_round_trip_and_state_merges_rests_unless_cleared(store: PgAccounts, srv, tmp_path) -> None:
    name = put_due(srv, store, tmp_path)
    assert [a.name for a in store.load()] == [name]
    assert store.put(name, {"type": "codex"}, replace=False) is False  # an import does not overwrite
    with pytest.raises(ValueError):
        store.put("../evil.json", {})
    later = time.time() + 600
    store.write_state(name, {"quota": {"primary": {"used_percent": 5}}, "rests": {"*": later}, "limited": ["*"]})
    store.write_state(name, {"rests": {}, "quota": {}})  # another host that did not see the rest
    state = store.read_state(name)
    assert state["rests"] == {"*": later} and state["limited"] == ["*"]
    assert state["quota"] == {"primary": {"used_percent": 5}}
    store.write_state(name, {"rests": {}, "rest_cleared_at": "2026-12-06T10:00:00Z"})  # `rest clear`: the clear wins
    assert store.read_state(name)["rests"] == {}
    other = PgAccounts(store.dsn)  # another host sees the writes; its own are skipped
    try:
        changes = other.poll(0)
        assert [n for n, _ in changes.states] == [name]
        assert other.poll(changes.seq).states == []
        other.write_state(name, {"rests": {}})
        assert store.poll(changes.seq).states[0][0] == name
        assert other.poll(changes.seq).states == []
    finally:
        other.close()
    removed = store.remove(name)
    assert removed is not None and removed.refresh_token
    assert store.load() == [] and store.read_state(name) == {}


def test_concurrent_refreshes_in_two_stores_spend_the_token_once(pg_dsn: str, srv, tmp_path) -> None:
    first, second = PgAccounts(pg_dsn), PgAccounts(pg_dsn)
    try:
        name = put_due(srv, first, tmp_path)
        account = first.get(name)
        assert account is not None
        srv.latency = 0.3

        async def burst() -> list:
            a, b = first.refresher(srv.url), second.refresher(srv.url)
            return await asyncio.gather(*[(a if i % 2 else b).ensure_fresh(account) for i in range(20)])

        results = asyncio.run(burst())
        assert srv.refresh_count() == 1 and srv.reused_count == 0
        assert {r.access_token for r in results} == {first.get(name).access_token}  # type: ignore[union-attr]
        assert first.get(name).refresh_token == srv.current_refresh_token("user@example.com")  # type: ignore[union-attr]
    finally:
        first.close()
        second.close()


def test_a_dead_login_is_recorded_in_the_row(store: PgAccounts, srv, tmp_path) -> None:
    name = put_due(srv, store, tmp_path)
    account = store.get(name)
    assert account is not None
    srv.revoke(account.refresh_token)
    with pytest.raises(RefreshError) as err:
        asyncio.run(store.refresher(srv.url).ensure_fresh(account))
    assert err.value.permanent and account.refresh_token not in str(err.value)
    assert store.get(name).needs_login  # type: ignore[union-attr]
    assert store.get(name).data[STATUS_KEY]["state"] == "needs-login"  # type: ignore[union-attr]


def test_no_refresh_while_the_database_is_unreachable(srv, tmp_path, pg_server, caplog) -> None:
    dsn = pg_server.new_database()
    store = PgAccounts(dsn)
    try:
        name = put_due(srv, store, tmp_path)
        account = store.get(name)
        assert account is not None
        store.dsn = dsn.replace(str(pg_server.port), "1")  # the database went away for new connections
        with pytest.raises(RefreshError) as err:
            asyncio.run(store.refresher(srv.url).ensure_fresh(account))
        assert err.value.code == "store_unavailable" and not err.value.permanent
        assert srv.refresh_requests() == []
    finally:
        store.close()


def test_the_database_unreachable_at_start_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(pg.StoreUnavailable) as err:
        PgAccounts("postgresql://me:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_a_refresher_killed_mid_exchange_loses_no_login(store: PgAccounts, srv, tmp_path, caplog) -> None:
    """kill -9 of the process that refreshes while the issuer works: its exchange child journals the
    answer; the next refresher (another process) waits for that child and uses its answer."""
    caplog.set_level(logging.INFO)
    name = put_due(srv, store, tmp_path)
    srv.latency = 2.0
    code = (
        "import asyncio, sys\n"
        "from cliproxy.addons.store.pg_accounts import PgAccounts\n"
        "s = PgAccounts(sys.argv[1]); a = s.get(sys.argv[2])\n"
        "asyncio.run(s.refresher(sys.argv[3]).ensure_fresh(a))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, store.dsn, name, srv.url], cwd=os.sep)
    deadline = time.monotonic() + 20
    while not srv.refresh_requests() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.refresh_requests(), "the refresh never reached the issuer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    account = store.get(name)
    assert account is not None
    fresh = asyncio.run(store.refresher(srv.url).ensure_fresh(account))  # waits for the orphaned exchange
    assert srv.refresh_count() == 1 and srv.reused_count == 0
    assert fresh.refresh_token == srv.current_refresh_token("user@example.com")
    assert store.get(name).refresh_token == fresh.refresh_token  # type: ignore[union-attr]


def test_a_journal_entry_left_behind_is_applied_by_the_next_load(store: PgAccounts, srv, tmp_path) -> None:
    name = put_due(srv, store, tmp_path)
    account = store.get(name)
    assert account is not None
    from cliproxy.auth.store import fingerprint

    answer = srv.issue(srv.lineages[srv.refresh_tokens[account.refresh_token]].identity, lineage=srv.refresh_tokens[account.refresh_token])
    store._run(
        lambda c: c.execute(
            "INSERT INTO cliproxy_refresh_journal (name, spent, body) VALUES (%s, %s, %s)",
            (name, fingerprint(account.refresh_token), json.dumps(answer).encode()),
        )
    )
    store._run(lambda c: c.execute("INSERT INTO cliproxy_refresh_journal (name, spent, body) VALUES (%s, 'stale', 'x')", (name,)))
    [loaded] = store.load()
    assert loaded.refresh_token == answer["refresh_token"]
    assert store._run(lambda c: c.execute("SELECT count(*) FROM cliproxy_refresh_journal").fetchone()[0]) == 0
    with pg.connect(store.dsn) as conn, conn.transaction():
        assert replay(conn, name) is None


def test_a_writer_that_missed_a_clear_does_not_undo_it(store: PgAccounts, srv, tmp_path) -> None:
    name = put_due(srv, store, tmp_path)
    later = time.time() + 600
    store.write_state(name, {"rests": {"*": later}, "limited": ["*"], "rest_cleared_at": "2026-12-06T10:00:00Z"})
    store.write_state(name, {"rests": {}, "limited": [], "rest_cleared_at": "2026-12-06T11:00:00Z"})  # cleared
    store.write_state(name, {"rests": {"m": later}, "limited": ["m", "x"], "rest_cleared_at": "2026-12-06T10:00:00Z"})  # stale view
    state = store.read_state(name)
    assert state["rest_cleared_at"] == "2026-12-06T11:00:00Z"
    assert state["rests"] == {"m": later} and state["limited"] == ["m"]
