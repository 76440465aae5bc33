"""Several hosts, one pool: three real mitmdump instances on one PostgreSQL database (a real server;
skips without one) share accounts, refreshes and rests, survive a kill -9 mid-refresh and a database
that goes away and comes back."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from cliproxy.addons.store.pg_accounts import PgAccounts
from cliproxy.auth.store import load_accounts
from cliproxy.scripts import cli
from tests.fakes.codex_backend import default_responder, usage_limit
from tests.fakes.oauth_server import FakeOAuthServer
from tests.proxyproc import Proxy, start_proxy

DAY = 86400


@pytest.fixture
def oauth():
    with FakeOAuthServer(access_ttl=10 * DAY) as srv:
        yield srv


@pytest.fixture
def store(pg_dsn: str):
    s = PgAccounts(pg_dsn)
    yield s
    s.close()


@pytest.fixture
def hosts(tmp_path, backend_server, oauth, pg_dsn):
    """start(n): n proxies on the same database, each with its own (unused, empty) auth dir."""
    started: list[Proxy] = []

    def start(n: int = 3, **extra) -> list[Proxy]:
        for _ in range(n):
            config = {
                "store": pg_dsn,
                "auth-dir": str(tmp_path / f"auth{len(started)}"),
                "codex-base-url": backend_server.base_url,
                "oauth-issuer": oauth.url,
                **extra,
            }
            started.append(start_proxy(tmp_path / f"host{len(started)}", config))
        return started[-n:]

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.stop()


def add_account(oauth: FakeOAuthServer, store: PgAccounts, tmp: Path, email: str, **kw) -> str:
    path = oauth.make_account(tmp / "seed", email=email, **kw)
    account = next(a for a in load_accounts(path.parent) if a.name == path.name)
    store.put(account.name, account.data)
    return account.name


def ask(proxy: Proxy, text: str = "hi", timeout: float = 30) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/v1/chat/completions",
        json={"model": "gpt-5.5", "messages": [{"role": "user", "content": text}]},
        timeout=timeout,
        trust_env=False,
    )


def accounts_used(backend) -> list[str]:
    return [r.headers.get("chatgpt-account-id") for r in backend.received]


def test_100_concurrent_requests_on_three_hosts_refresh_an_expired_token_once(hosts, oauth, store, tmp_path, backend) -> None:
    name = add_account(oauth, store, tmp_path, "one@example.com", expires_in=-60, age=DAY)
    oauth.latency = 0.3  # the refresh is slow enough for all three hosts to want it at once
    proxies = hosts(3)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60, trust_env=False, limits=httpx.Limits(max_connections=100)) as client:

            async def one(i: int) -> int:
                r = await client.post(
                    proxies[i % 3].base_url + "/v1/chat/completions",
                    json={"model": "gpt-5.5", "messages": [{"role": "user", "content": f"hi {i}"}]},
                )
                return r.status_code

            return await asyncio.gather(*[one(i) for i in range(100)])

    started = time.monotonic()
    statuses = asyncio.run(burst())
    print(f"100 requests across 3 hosts on an expired token: {time.monotonic() - started:.2f}s")
    assert statuses == [200] * 100
    assert oauth.refresh_count() == 1 and oauth.reused_count == 0
    assert len(oauth.refresh_requests()) == 1
    fresh = store.get(name)
    assert fresh is not None and fresh.refresh_token == oauth.current_refresh_token("one@example.com")
    assert {r.headers["authorization"] for r in backend.received} == {f"Bearer {fresh.access_token}"}


def test_an_account_rested_by_a_429_on_one_host_is_not_tried_by_the_others(hosts, oauth, store, tmp_path, backend) -> None:
    add_account(oauth, store, tmp_path, "a@example.com", account_id="acct-A")
    add_account(oauth, store, tmp_path, "b@example.com", account_id="acct-B")
    first, second, third = hosts(3, routing={"strategy": "fill-first"})  # A (first by name) is always tried first
    backend.responder = lambda req: usage_limit(resets_in=300) if req.headers["chatgpt-account-id"] == "acct-A" else default_responder(req)
    assert ask(first).status_code == 200
    assert accounts_used(backend) == ["acct-A", "acct-B"]  # A refused on the first host, B served
    time.sleep(1.0)  # the others follow the store every 0.25 s
    for proxy in (second, third, second, third):
        assert ask(proxy, text=f"new {time.monotonic()}").status_code == 200
    assert accounts_used(backend)[2:] == ["acct-B"] * 4  # A rests on every host
    state = store.read_state("codex-a@example.com-plus.json")
    assert state["rests"] and min(state["rests"].values()) > time.time() + 200

    backend.responder = default_responder  # A has quota again; `rest clear` on any machine lifts its rest everywhere
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(f"store: {store.dsn}\n")
    assert cli.main(["rest", "clear", "a@example.com", "--config", str(cfg)], console=Console(file=io.StringIO())) == 0
    time.sleep(1.0)
    for proxy in (first, second, third):
        assert ask(proxy, text=f"after {time.monotonic()}").status_code == 200
    assert accounts_used(backend)[6:] == ["acct-A"] * 3


def test_kill_9_of_a_host_during_a_refresh_loses_no_account(hosts, oauth, store, tmp_path, backend) -> None:
    name = add_account(oauth, store, tmp_path, "k@example.com", expires_in=-60, age=DAY)
    first, second = hosts(2)
    oauth.latency = 2.0

    def refresh_started() -> bool:
        return bool(oauth.refresh_requests())

    import threading

    threading.Thread(target=lambda: _swallow(lambda: ask(first, timeout=10)), daemon=True).start()
    deadline = time.monotonic() + 15
    while not refresh_started() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert refresh_started(), "the refresh never reached the issuer"
    os.kill(first.proc.pid, signal.SIGKILL)  # while the issuer works on it
    first.proc.wait(10)
    assert ask(second).status_code == 200  # waits for the orphaned exchange and uses its answer
    assert oauth.refresh_count() == 1 and oauth.reused_count == 0
    fresh = store.get(name)
    assert fresh is not None and fresh.refresh_token == oauth.current_refresh_token("k@example.com")
    assert "using the answer of an exchange that outlived its refresher" in second.log or len(oauth.refresh_requests()) == 1


def _swallow(fn) -> None:
    try:
        fn()
    except httpx.HTTPError:
        pass


def test_database_lost_while_running_serves_from_memory_logs_once_and_recovers(hosts, oauth, store, tmp_path, pg_server) -> None:
    add_account(oauth, store, tmp_path, "m@example.com")
    [proxy] = hosts(1)
    assert ask(proxy).status_code == 200
    mark = len(proxy.lines)
    try:
        pg_server.stop()
        for i in range(3):
            assert ask(proxy, text=f"while down {i}").status_code == 200  # the token in memory is still valid
        proxy.wait_log("account store is unreachable", start=mark)
        time.sleep(1.0)
        assert sum("account store is unreachable" in line for line in proxy.lines[mark:]) == 1
    finally:
        pg_server.start()
    proxy.wait_log("account store is reachable again", start=mark, timeout=15)
    store.close()  # a new connection to the restarted server
    add_account(oauth, store, tmp_path, "new@example.com")  # a login made while it runs
    proxy.wait_log("2 account(s) in the pool", start=mark, timeout=10)
    assert ask(proxy, text="after").status_code == 200
    assert "Traceback" not in proxy.log


def test_an_unreachable_database_at_start_is_one_clear_error(tmp_path, backend_server) -> None:
    config = {"store": "postgresql://me:hunter2@127.0.0.1:1/none", "codex-base-url": backend_server.base_url}
    with pytest.raises(RuntimeError) as err:
        start_proxy(tmp_path / "p", config)
    log = str(err.value)
    assert "the account store cannot be used" in log and "127.0.0.1:1" in log
    assert "hunter2" not in log and "Traceback" not in log


@pytest.mark.slow  # 40-65 s on a busy 2-core machine
@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_on_three_hosts_spends_every_refresh_token_once(hosts, oauth, store, tmp_path, backend) -> None:
    """Rounds of 30 clients over three hosts on tokens that live 4 s (due every 2 s), one host killed with
    SIGKILL at a random moment of each and started again. Only mitmdump dies, never its exchange child,
    so no rotation may be lost at all: afterwards every account's stored refresh token is the issuer's
    live one, and the issuer never saw a spent one again."""
    import random
    import threading

    oauth.access_ttl, oauth.latency = 4, 0.2
    names = [add_account(oauth, store, tmp_path, f"r{i}@example.com", expires_in=-60, age=DAY) for i in range(2)]
    live = hosts(3)
    rng = random.Random(int(time.time()))
    answered = failed = 0

    def clients(targets: list[Proxy], stop: threading.Event) -> None:
        nonlocal answered, failed

        async def worker(i: int, client: httpx.AsyncClient) -> None:
            nonlocal answered, failed
            while not stop.is_set():
                proxy = targets[i % len(targets)]
                try:
                    r = await client.post(
                        proxy.base_url + "/v1/chat/completions",
                        json={"model": "gpt-5.5", "messages": [{"role": "user", "content": f"r {rng.random()}"}]},
                    )
                except httpx.HTTPError:
                    i += 1  # that host was killed: go to another one
                    continue
                answered += r.status_code == 200
                failed += r.status_code != 200
                i += 1

        async def run() -> None:
            async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
                await asyncio.gather(*[worker(i, client) for i in range(30)])

        asyncio.run(run())

    for _ in range(4):
        stop = threading.Event()
        burst = threading.Thread(target=clients, args=(list(live), stop), daemon=True)
        burst.start()
        time.sleep(rng.uniform(0.5, 3.0))
        victim = rng.randrange(3)
        os.kill(live[victim].proc.pid, signal.SIGKILL)
        live[victim].proc.wait(10)
        time.sleep(1.0)  # the others go on meanwhile, taking over its refreshes
        stop.set()
        burst.join(60)
        live[victim] = hosts(1)[0]
    for proxy in live:  # the end: all of them at once, whatever they are doing (they refresh on their own too)
        os.kill(proxy.proc.pid, signal.SIGKILL)
        proxy.proc.wait(10)
    deadline, seen = time.monotonic() + 30, -1
    while time.monotonic() < deadline:  # exchanges that outlived their hosts finish and journal
        refreshes = oauth.refresh_requests()
        if len(refreshes) == seen and all(r.status and (r.status != 200 or r.delivered is not None) for r in refreshes):
            break
        seen = len(refreshes)
        time.sleep(0.5)
    print(f"rounds=4 answered={answered} non_200={failed} rotations={oauth.refresh_count()}")
    assert oauth.reused_count == 0, f"{oauth.reused_count} spent refresh tokens were sent again"
    assert oauth.refresh_count() >= 4
    accounts = {a.name: a for a in store.load()}  # applies what a dead host's exchange journaled
    for name, email in zip(names, ("r0@example.com", "r1@example.com"), strict=True):
        assert accounts[name].refresh_token == oauth.current_refresh_token(email), name
    [after] = hosts(1)
    for _ in range(4):
        assert ask(after).status_code == 200
    assert oauth.reused_count == 0
