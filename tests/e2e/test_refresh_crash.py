"""kill -9 of the proxy at random moments while 50 concurrent requests keep its 3 accounts refreshing:
no login is ever lost to a crash after its answer reached the proxy, and no refresh token is sent twice.

Every round starts a real mitmdump on an auth dir whose access tokens live 4 s (so they are due every
2 s), runs 50 clients in a loop, SIGKILLs the proxy at a random moment, and then checks the
disk before the next start: for each login, the refresh token the issuer now honours must be in the
account file or in its refresh journal. The one exception cannot be helped by any client: the issuer
rotated the token but the answer never reached the proxy (the kill came while the request was at the
issuer or the answer was still unread in the socket). The fake issuer tells these apart (a process that
dies with unread data makes its kernel reset the connection); such a login is signed in again, as a
user would, before the next round. The next start must then complete any journal and never send a
spent refresh token (the issuer counts `refresh_token_reused`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cliproxy.auth.claims import identity_from_tokens
from cliproxy.auth.journal import journal_path
from cliproxy.auth.locking import try_account_lock
from cliproxy.auth.store import load_accounts
from tests.fakes.oauth_server import FakeOAuthServer, Recorded
from tests.proxyproc import Proxy, start_proxy

DAY = 86400
ACCOUNTS = 3
CLIENTS = 50
ACCESS_TTL = 4  # seconds; due for a refresh at half-life
ISSUER_LATENCY = 0.2  # seconds the issuer takes per refresh, so that kills land while it works
KILL_WINDOW = (0.05, 3.0)  # seconds after the clients start
AFTER_ANSWER = 0.05  # a kill this soon after a rotation's answer lands where unjournaled tokens were lost


def body() -> dict:
    """A new conversation each time, so that the pool spreads requests over every account."""
    return {"model": "gpt-5.5", "messages": [{"role": "user", "content": f"hi {random.random()}"}]}


@dataclass
class Tally:
    rounds: int = 0
    answered: int = 0  # requests the proxy answered 200 during the rounds
    rotations: int = 0
    kills_at_issuer: int = 0  # a refresh request was at the issuer when the kill came
    kills_after_answer: int = 0  # within AFTER_ANSWER of a rotation's answer
    replayed: int = 0  # rounds that left a journal for the next start to complete
    undelivered: list[str] = field(default_factory=list)  # rotations lost on the wire (unavoidable)
    lost: list[str] = field(default_factory=list)  # rotations that reached the proxy but not its disk


def refresh_token_on_disk(path: Path) -> set[str]:
    """The refresh tokens a restart can recover for this account: the file's and the journal's."""
    found = {json.loads(path.read_text())["refresh_token"]}
    try:
        found.add(json.loads(journal_path(path).read_bytes().partition(b"\n")[2])["refresh_token"])
    except (FileNotFoundError, ValueError, KeyError):
        pass
    return found


def live_token(oauth: FakeOAuthServer, email: str) -> str:
    """The refresh token the issuer honours for `email`'s newest login."""
    with oauth._lock:
        return next(ln.current for ln in reversed(oauth.lineages.values()) if ln.identity.email == email)


def relogin(oauth: FakeOAuthServer, path: Path, email: str, lineage: str) -> None:
    """What a user does after losing a login: the old one ends, a new sign-in replaces the file."""
    oauth.lineages[lineage].revoked = True
    oauth.make_account(path.parent, email=email, name=path.name, expires_in=-60, age=DAY)


def clients_until_killed(proxy: Proxy, tally: Tally, stop: threading.Event) -> None:
    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await client.post(proxy.base_url + "/v1/chat/completions", json=body())
            except httpx.HTTPError:
                return  # the proxy is gone
            if r.status_code == 200:
                tally.answered += 1
            else:
                tally.lost.append(f"a request got {r.status_code} before the kill: {r.text[:200]}")
                return

    async def run() -> None:
        async with httpx.AsyncClient(timeout=30, trust_env=False, limits=httpx.Limits(max_connections=CLIENTS)) as c:
            await asyncio.gather(*[worker(c) for _ in range(CLIENTS)])

    asyncio.run(run())


def settle(oauth: FakeOAuthServer, paths: list[Path]) -> list[Recorded]:
    """Wait until the issuer has answered every refresh that reached it and knows each answer's fate, and
    no account is locked (a refresh exchange that outlived the proxy has finished)."""
    deadline, seen = time.monotonic() + 30, -1
    while time.monotonic() < deadline:
        refreshes = oauth.refresh_requests()
        if (
            len(refreshes) == seen
            and all(r.status and (r.status != 200 or r.delivered is not None) for r in refreshes)
            and all(unlocked(p) for p in paths)
        ):
            return refreshes
        seen = len(refreshes)
        time.sleep(0.3)
    raise AssertionError("the fake issuer did not settle after the kill")


def unlocked(path: Path) -> bool:
    with try_account_lock(path) as locked:
        return locked


def crash_rounds(tmp_path: Path, backend_url: str, rounds: int, seed: int) -> Tally:
    rng, tally = random.Random(seed), Tally()
    with FakeOAuthServer(access_ttl=ACCESS_TTL, latency=ISSUER_LATENCY) as oauth:
        auth = tmp_path / "auth"
        paths = [oauth.make_account(auth, email=f"u{i}@example.com", expires_in=-60, age=DAY) for i in range(ACCOUNTS)]
        config = {"auth-dir": str(auth), "codex-base-url": backend_url, "oauth-issuer": oauth.url}
        checked = 0
        for n in range(rounds):
            proxy = start_proxy(tmp_path / f"p{n}", config)
            stop = threading.Event()
            burst = threading.Thread(target=clients_until_killed, args=(proxy, tally, stop), daemon=True)
            burst.start()
            started = time.monotonic()
            time.sleep(rng.uniform(*KILL_WINDOW))
            kill_at = time.monotonic()
            os.kill(proxy.proc.pid, signal.SIGKILL)
            proxy.proc.wait(10)
            stop.set()
            burst.join(30)
            refreshes = settle(oauth, paths)
            tally.rounds += 1
            new = refreshes[checked:]
            checked = len(refreshes)
            print(
                f"round {n}: kill at {kill_at - started:.2f}s; refreshes at "
                + ", ".join(f"{r.at - started:.2f}-{(r.answered_at or 0) - started:.2f}" for r in new)
            )
            tally.rotations += sum(r.status == 200 for r in new)
            tally.kills_at_issuer += any(r.at <= kill_at and (r.answered_at is None or r.answered_at > kill_at) for r in new)
            tally.kills_after_answer += any(
                r.status == 200 and r.answered_at is not None and 0 <= kill_at - r.answered_at < AFTER_ANSWER for r in new
            )
            tally.replayed += any(journal_path(p).exists() for p in paths)
            for path in paths:
                email = json.loads(path.read_text())["email"]
                current = live_token(oauth, email)
                lineage = oauth.refresh_tokens[current]
                last = next(
                    (r for r in reversed(new) if r.status == 200 and oauth.refresh_tokens.get(r.form.get("refresh_token", "")) == lineage),
                    None,
                )
                if current in refresh_token_on_disk(path):
                    continue
                if last is not None and last.delivered is False:
                    tally.undelivered.append(f"round {n}: {email}")
                else:
                    since = f"{(kill_at - last.answered_at) * 1000:.1f} ms" if last and last.answered_at else "?"
                    tally.lost.append(
                        f"round {n}: {email}: the rotated token reached the proxy but not the disk "
                        f"(killed {since} after the issuer answered)"
                    )
                relogin(oauth, path, email, lineage)
        print(report(tally))
        # the survivors serve: every account answers, none needs a new login, no token was ever spent twice
        proxy = start_proxy(tmp_path / "final", config)
        try:
            with httpx.Client(base_url=proxy.base_url, timeout=30, trust_env=False) as client:
                for _ in range(3 * ACCOUNTS):
                    r = client.post("/v1/chat/completions", json=body())
                    assert r.status_code == 200, r.text
        finally:
            proxy.stop()
        for account in load_accounts(auth):
            assert not account.needs_login, account.label
            assert account.refresh_token == live_token(oauth, account.email), account.label
            assert not journal_path(account.path).exists()
        served = {
            identity_from_tokens(None, r.headers["authorization"].removeprefix("Bearer ")).email
            for r in backend_received(backend_url)[-3 * ACCOUNTS :]
        }
        assert served == {f"u{i}@example.com" for i in range(ACCOUNTS)}
        assert oauth.reused_count == 0, f"{oauth.reused_count} spent refresh tokens were sent again"
    return tally


_BACKENDS: dict[str, object] = {}


def backend_received(url: str) -> list:
    return _BACKENDS[url].received


def report(tally: Tally) -> str:
    return (
        f"rounds={tally.rounds} answered={tally.answered} rotations={tally.rotations} "
        f"kills_at_issuer={tally.kills_at_issuer} kills_within_{int(AFTER_ANSWER * 1000)}ms_of_an_answer="
        f"{tally.kills_after_answer} journals_left={tally.replayed} "
        f"lost_on_the_wire={len(tally.undelivered)} lost={len(tally.lost)}"
    )


@pytest.fixture
def backend_url(backend) -> str:
    _BACKENDS[backend.base_url] = backend
    return backend.base_url


def test_kill_9_during_refreshes_loses_no_login(tmp_path, backend_url):
    tally = crash_rounds(tmp_path, backend_url, rounds=5, seed=int(time.time()))
    assert tally.lost == [] and tally.rotations >= tally.rounds, tally.lost


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_fifty_times_during_refreshes_loses_no_login(tmp_path, backend_url):
    tally = crash_rounds(tmp_path, backend_url, rounds=50, seed=int(time.time()))
    assert tally.lost == [] and tally.rotations >= tally.rounds, tally.lost
