"""Token refresh: timing, rotation, terminal and transient failures, and one refresh at a time."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from cliproxy.auth.locking import account_lock_sync, lock_path
from cliproxy.auth.refresh import RefreshError, TokenRefresher, refresh_sync
from cliproxy.auth.store import STATUS_KEY, Account, load_account, load_accounts
from tests.fakes.oauth_server import FakeOAuthServer

REPO = Path(__file__).resolve().parents[2]
DAY = 86400


@pytest.fixture
def srv():
    with FakeOAuthServer(access_ttl=10 * DAY) as server:
        yield server


@pytest.fixture(autouse=True)
def _debug_logs(caplog):
    caplog.set_level(logging.DEBUG)


def secrets_of(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    return [data[k] for k in ("access_token", "refresh_token", "id_token") if data.get(k)]


def assert_no_secrets(text: str, *paths_or_tokens) -> None:
    for item in paths_or_tokens:
        for secret in secrets_of(item) if isinstance(item, Path) else [item]:
            assert secret not in text
            assert secret[:24] not in text


def due_account(srv, auth_dir, **kw) -> Path:
    """An account issued 10 days ago with 5 minutes left: inside the 30-minute refresh margin."""
    return srv.make_account(auth_dir, expires_in=300, age=10 * DAY, **kw)


def fast(srv, **kw) -> TokenRefresher:
    kw.setdefault("backoff", 0.01)
    return TokenRefresher(srv.url, **kw)


# -- when ---------------------------------------------------------------------------------------------
async def test_fresh_token_needs_no_network(srv, tmp_path):
    path = srv.make_account(tmp_path, expires_in=3600, age=10 * DAY)  # 1 h left > 30 min margin
    account = load_account(path)
    assert await fast(srv).ensure_fresh(account) is account
    assert srv.requests == []


async def test_refreshes_ahead_of_expiry_and_persists_the_rotation(srv, tmp_path, caplog):
    path = due_account(srv, tmp_path, prefix="work", weight=3)
    before = load_account(path)
    old_secrets = secrets_of(path)
    fresh = await fast(srv).ensure_fresh(before)
    assert srv.refresh_count() == 1
    req = srv.refresh_requests()[0]
    assert req.form == {
        "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
        "grant_type": "refresh_token",
        "refresh_token": before.refresh_token,
        "scope": "openid profile email",
    }
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    on_disk = json.loads(path.read_text())
    assert on_disk["refresh_token"] == srv.current_refresh_token("user@example.com") != before.refresh_token
    assert on_disk["access_token"] == fresh.access_token != before.access_token
    assert on_disk["prefix"] == "work" and on_disk["weight"] == 3 and on_disk["type"] == "codex"
    assert fresh.expires_at > before.expires_at + timedelta(days=9)
    assert fresh.last_refresh > before.last_refresh
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert lock_path(path).name == f".{path.name}.lock" and lock_path(path).exists()
    assert [a.name for a in load_accounts(tmp_path)] == [path.name]  # lock/temp files are not accounts
    # a token fresh from the issuer is not "due" again
    assert await fast(srv).ensure_fresh(fresh) is fresh and srv.refresh_count() == 1
    assert_no_secrets(caplog.text, path, *old_secrets)


async def test_short_lived_tokens_are_refreshed_at_half_life(tmp_path):
    with FakeOAuthServer(access_ttl=60) as srv:
        path = srv.make_account(tmp_path, expires_in=60)
        refresher = fast(srv)
        assert not refresher.needs_refresh(load_account(path))
        path2 = srv.make_account(tmp_path, email="b@example.com", expires_in=20, age=40)
        assert refresher.needs_refresh(load_account(path2))


async def test_unknown_expiry_uses_last_refresh(tmp_path):
    refresher = TokenRefresher("http://127.0.0.1:9")
    recent = Account(tmp_path / "a.json", {"access_token": "opaque", "last_refresh": "2999-01-01T00:00:00Z"})
    old = Account(tmp_path / "a.json", {"access_token": "opaque", "last_refresh": "2000-01-01T00:00:00Z"})
    assert not refresher.needs_refresh(recent) and refresher.needs_refresh(old)
    assert refresher.needs_refresh(Account(tmp_path / "a.json", {"access_token": "opaque"}))
    assert refresher.needs_refresh(Account(tmp_path / "a.json", {"refresh_token": "r"}))


async def test_missing_id_token_in_answer_keeps_the_old_one(srv, tmp_path):
    path = due_account(srv, tmp_path)
    before = load_account(path)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "new-access", "refresh_token": "rt_new", "expires_in": 3600})

    refresher = TokenRefresher(srv.url, client_factory=lambda: httpx.Client(transport=httpx.MockTransport(handler)))
    fresh = await refresher.ensure_fresh(before)
    data = json.loads(path.read_text())
    assert data["id_token"] == before.id_token and data["email"] == "user@example.com"
    assert data["refresh_token"] == "rt_new" and fresh.access_token == "new-access"
    assert fresh.expires_at is not None


# -- force (after a 401) ----------------------------------------------------------------------------
async def test_force_refreshes_a_valid_token_once_and_adopts_newer_files(srv, tmp_path):
    path = srv.make_account(tmp_path)  # valid for 10 days
    seen = load_account(path)
    refresher = fast(srv)
    fresh = await refresher.ensure_fresh(seen, force=True)
    assert srv.refresh_count() == 1 and fresh.access_token != seen.access_token
    # another request that saw the same (old) token fail: the file already has a new one → no network
    again = await refresher.ensure_fresh(seen, force=True)
    assert again.access_token == fresh.access_token and srv.refresh_count() == 1


async def test_fifty_concurrent_forced_callers_share_one_refresh(tmp_path):
    with FakeOAuthServer(access_ttl=10 * DAY, latency=0.2) as srv:
        seen = load_account(srv.make_account(tmp_path))
        refresher = fast(srv)
        results = await asyncio.gather(*[refresher.ensure_fresh(seen, force=True) for _ in range(50)])
        assert srv.refresh_count() == 1 and srv.reused_count == 0
        assert len({r.access_token for r in results}) == 1


# -- one at a time ---------------------------------------------------------------------------------
async def test_fifty_concurrent_callers_one_refresh(tmp_path, caplog):
    with FakeOAuthServer(access_ttl=10 * DAY, latency=0.3) as srv:
        path = due_account(srv, tmp_path)
        account = load_account(path)
        refresher = fast(srv)
        results = await asyncio.gather(*[refresher.ensure_fresh(account) for _ in range(50)])
        assert srv.refresh_count() == 1 and len(srv.refresh_requests()) == 1 and srv.reused_count == 0
        assert len({r.access_token for r in results}) == 1
        assert results[0].refresh_token == srv.current_refresh_token("user@example.com")
        # two refresher instances in one process (e.g. after a config reload) still coordinate via flock
        account2 = load_account(due_account(srv, tmp_path, email="b@example.com"))
        r1, r2 = TokenRefresher(srv.url), TokenRefresher(srv.url)
        await asyncio.gather(*[r.ensure_fresh(account2) for r in (r1, r2) * 10])
        assert srv.refresh_count("b@example.com") == 1 and srv.reused_count == 0
        assert_no_secrets(caplog.text, path)


@pytest.mark.parametrize("force", [False, True])
def test_two_processes_refresh_once(tmp_path, force):
    with FakeOAuthServer(access_ttl=10 * DAY, latency=0.3) as srv:
        path = due_account(srv, tmp_path) if not force else srv.make_account(tmp_path)
        start_at = time.time() + 1.5  # both interpreters are up by then
        cmd = [sys.executable, "-m", "tests.fakes.refresh_worker", srv.url, str(path), "25", str(start_at)]
        if force:
            cmd.append("--force")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=30) for p in procs]
        for proc, (_, err) in zip(procs, outputs):
            assert proc.returncode == 0, err
        results = [json.loads(out) for out, _ in outputs]
        assert all(r["errors"] == [] for r in results)
        assert srv.refresh_count() == 1 and srv.reused_count == 0
        sent = [r.form["refresh_token"] for r in srv.refresh_requests()]
        assert len(sent) == len(set(sent)) == 1  # no refresh token was ever sent twice
        assert results[0]["tokens"] == results[1]["tokens"] and len(results[0]["tokens"]) == 1


async def test_waiting_for_another_process_does_not_block_the_loop(srv, tmp_path):
    path = due_account(srv, tmp_path)
    account = load_account(path)
    held, release = threading.Event(), threading.Event()

    def other_process():
        with account_lock_sync(path):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=other_process)
    thread.start()
    held.wait(5)
    task = asyncio.create_task(fast(srv).ensure_fresh(account))
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.02)
        ticks += 1
    assert not task.done() and srv.requests == []
    release.set()
    fresh = await task
    thread.join()
    assert ticks == 20 and srv.refresh_count() == 1 and fresh.access_token != account.access_token


# -- terminal failures ----------------------------------------------------------------------------
async def test_reused_token_marks_needs_login_and_is_never_retried(srv, tmp_path, caplog):
    path = due_account(srv, tmp_path)
    stale = load_account(path)
    # another program (say the Codex CLI) refreshed the same login: our copy is now dead
    httpx.post(
        srv.url + "/oauth/token",
        data={"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token", "refresh_token": stale.refresh_token},
    )
    refresher = fast(srv)
    with pytest.raises(RefreshError) as info:
        await refresher.ensure_fresh(stale)
    err = info.value
    assert err.permanent and err.code == "refresh_token_reused" and err.status == 401
    assert "cliproxy login" in str(err) and "user@example.com" in str(err)
    assert srv.reused_count == 1
    status = json.loads(path.read_text())[STATUS_KEY]
    assert status["state"] == "needs-login" and status["reason"] == "refresh_token_reused" and status["at"]
    assert load_account(path).needs_login and load_account(path).state() == "needs-login"
    # later calls fail fast: same refresher, a new one (another process), forced or not
    requests = len(srv.requests)
    for r in (refresher, fast(srv)):
        for force in (False, True):
            with pytest.raises(RefreshError) as again:
                await r.ensure_fresh(load_account(path), force=force)
            assert again.value.permanent and again.value.code == "refresh_token_reused"
    assert len(srv.requests) == requests
    assert_no_secrets(caplog.text + str(err), path, stale.refresh_token)
    # a new login replaces the file: the verdict no longer applies
    srv.make_account(tmp_path, name=path.name, expires_in=300, age=10 * DAY)
    fresh = await refresher.ensure_fresh(load_account(path))
    assert fresh.access_token and STATUS_KEY not in json.loads(path.read_text())


@pytest.mark.parametrize(
    "status, body, code",
    [
        (400, {"error": "invalid_grant", "code": "refresh_token_reused"}, "refresh_token_reused"),
        (400, {"error": "invalid_grant", "error_description": "bad"}, "invalid_grant"),
        (401, {"error": {"code": "refresh_token_expired", "message": "expired"}}, "refresh_token_expired"),
        (401, {"error": "something_else"}, "unauthorized"),
        (401, "not json", "unauthorized"),
    ],
)
async def test_terminal_answers(srv, tmp_path, status, body, code):
    path = due_account(srv, tmp_path)
    srv.fail_refreshes(1, status, body)
    with pytest.raises(RefreshError) as info:
        await fast(srv).ensure_fresh(load_account(path))
    assert info.value.permanent and info.value.code == code
    assert len(srv.refresh_requests()) == 1
    assert json.loads(path.read_text())[STATUS_KEY]["reason"] == code


async def test_revoked_login(srv, tmp_path):
    path = due_account(srv, tmp_path)
    srv.revoke(load_account(path).refresh_token)
    with pytest.raises(RefreshError) as info:
        await fast(srv).ensure_fresh(load_account(path))
    assert info.value.permanent and info.value.code == "refresh_token_invalidated"


async def test_removed_file_and_missing_refresh_token(srv, tmp_path):
    path = due_account(srv, tmp_path)
    account = load_account(path)
    path.unlink()
    with pytest.raises(RefreshError) as info:
        await fast(srv).ensure_fresh(account)
    assert info.value.permanent and info.value.code == "account_removed"
    path = due_account(srv, tmp_path)
    data = json.loads(path.read_text())
    del data["refresh_token"]
    path.write_text(json.dumps(data))
    with pytest.raises(RefreshError) as info:
        await fast(srv).ensure_fresh(load_account(path))
    assert info.value.code == "no_refresh_token" and srv.refresh_requests() == []


# -- transient failures -----------------------------------------------------------------------------
async def test_transient_errors_are_retried_with_backoff(srv, tmp_path):
    path = due_account(srv, tmp_path)
    srv.fail_refreshes(2, 503)
    fresh = await fast(srv).ensure_fresh(load_account(path))
    assert len(srv.refresh_requests()) == 3 and srv.refresh_count() == 1
    assert fresh.refresh_token == srv.current_refresh_token("user@example.com")


async def test_transient_failure_reported_then_rests(srv, tmp_path):
    path = due_account(srv, tmp_path)
    account = load_account(path)
    srv.fail_refreshes(10, 502, {"error": {"message": "bad gateway"}})
    refresher = fast(srv, retry_after=60)
    with pytest.raises(RefreshError) as info:
        await refresher.ensure_fresh(account)
    err = info.value
    assert not err.permanent and err.status == 502 and "502" in str(err)
    assert len(srv.refresh_requests()) == 3
    assert STATUS_KEY not in json.loads(path.read_text())
    # while resting: the old, still valid token is handed back without a request; a forced call fails fast
    assert (await refresher.ensure_fresh(account)).access_token == account.access_token
    with pytest.raises(RefreshError):
        await refresher.ensure_fresh(account, force=True)
    assert len(srv.refresh_requests()) == 3


async def test_network_errors(tmp_path, srv):
    path = due_account(srv, tmp_path)
    calls = []

    def factory(exc):
        def handler(request):
            calls.append(request)
            raise exc

        return lambda: httpx.Client(transport=httpx.MockTransport(handler))

    # connection refused: the token never left, so resending it is safe
    with pytest.raises(RefreshError) as info:
        await TokenRefresher(srv.url, backoff=0.01, client_factory=factory(httpx.ConnectError("refused"))).ensure_fresh(load_account(path))
    assert not info.value.permanent and info.value.code == "network" and len(calls) == 3
    # no answer after sending: the issuer may have rotated it, so it is not resent in a loop
    calls.clear()
    with pytest.raises(RefreshError) as info:
        await TokenRefresher(srv.url, backoff=0.01, client_factory=factory(httpx.ReadTimeout("slow"))).ensure_fresh(load_account(path))
    assert not info.value.permanent and len(calls) == 1


async def test_non_retryable_client_error(srv, tmp_path):
    path = due_account(srv, tmp_path)
    srv.fail_refreshes(
        3, 403, {"error": {"code": "unsupported_country_region_territory", "message": "Country, region, or territory not supported"}}
    )
    with pytest.raises(RefreshError) as info:
        await fast(srv).ensure_fresh(load_account(path))
    assert not info.value.permanent and info.value.code == "unsupported_country_region_territory"
    assert "not supported" in str(info.value) and len(srv.refresh_requests()) == 1


async def test_unreachable_issuer_with_proxy_env_ignored(tmp_path, monkeypatch, srv):
    # the shell running the proxy exports HTTPS_PROXY / HTTP_PROXY; token traffic must not use them
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    path = due_account(srv, tmp_path)
    fresh = await fast(srv).ensure_fresh(load_account(path))
    assert srv.refresh_count() == 1 and fresh.access_token


def test_refresh_sync(srv, tmp_path):
    path = due_account(srv, tmp_path)
    refresher = fast(srv)
    fresh = refresh_sync(load_account(path), refresher=refresher)
    again = refresh_sync(fresh, force=True, refresher=refresher)  # a second event loop, same refresher
    assert srv.refresh_count() == 2 and again.access_token != fresh.access_token
