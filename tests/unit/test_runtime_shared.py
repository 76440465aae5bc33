"""The runtime following a shared account store (a fake store; the real one is in tests/e2e/test_pg_accounts.py):
other hosts' logins, rests and clears are taken over, an outage is logged once and recovered from."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.store import pg
from cliproxy.addons.store.pg_accounts import Changes
from cliproxy.auth.store import Account, load_accounts
from tests.fakes.accounts import mint_account


class FakeStore:
    shared = True
    where = "postgresql://fake"

    def __init__(self, accounts: list[Account]) -> None:
        self.accounts = accounts
        self.states: list[tuple[str, dict[str, Any]]] = []
        self.down = False
        self.version = 1

    def load(self) -> list[Account]:
        return list(self.accounts)

    def read_states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return {}

    def poll(self, seq: int) -> Changes:
        if self.down:
            raise pg.StoreUnavailable("store postgresql://fake: connection refused")
        new = self.states[seq:]
        return Changes((len(self.accounts), self.version), new, seq + len(new))

    def close(self) -> None:
        pass


@pytest.fixture
def runtime(tmp_path) -> tuple[Runtime, FakeStore]:
    mint_account(tmp_path, "a@example.com", "acct-A")
    mint_account(tmp_path, "b@example.com", "acct-B")
    accounts = load_accounts(tmp_path)
    store = FakeStore(accounts[:1])
    rt = Runtime()
    rt.accounts = store  # type: ignore[assignment]
    rt.reload_accounts()
    store.accounts = accounts  # a login on another host
    store.version = 2
    return rt, store


A = "codex-a@example.com-plus.json"
LATER = time.time() + 7 * 86400  # taken at collection: far enough ahead for a long suite run


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        ({}, {"rests": {"*": LATER}}, {"*": LATER}),  # another host's rest holds here
        ({"gpt-5.5": LATER + 5}, {"rests": {"gpt-5.5": LATER}}, {"gpt-5.5": LATER + 5}),  # the later end stays
        ({}, {"rests": {"*": time.time() - 5}}, {}),  # an ended rest is not taken over
        ({}, {"rests": "junk"}, {}),
        ({"*": LATER}, {"rests": {}, "rest_cleared_at": "2026-12-06T10:00:00Z"}, {}),  # a clear lifts it
    ],
)
def test_other_hosts_rests_and_clears(runtime, local, remote, expected) -> None:
    rt, store = runtime
    asyncio.run(rt.follow_once(store))  # type: ignore[arg-type]
    member = rt.pool.get(A)
    assert member is not None
    member.cooldown_until.update(local)
    store.states.append((A, remote))
    asyncio.run(rt.follow_once(store))  # type: ignore[arg-type]
    assert member.cooldown_until == expected


def test_a_login_on_another_host_joins_the_pool_and_an_outage_is_logged_once(runtime, caplog) -> None:
    caplog.set_level(logging.INFO)
    rt, store = runtime
    assert [m.key for m in rt.pool.members] == [A]

    async def follow(seconds: float) -> None:
        task = asyncio.ensure_future(rt.follow())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(follow(0.4))
    assert [m.key for m in rt.pool.members] == [A, "codex-b@example.com-plus.json"]
    store.down = True
    asyncio.run(follow(1.2))
    assert rt.store_down
    assert sum("account store is unreachable" in r.message for r in caplog.records) == 1
    assert len(rt.pool.members) == 2  # still served from memory
    store.down = False
    asyncio.run(follow(0.4))
    assert not rt.store_down and sum("reachable again" in r.message for r in caplog.records) == 1
