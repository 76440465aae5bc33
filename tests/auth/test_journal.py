"""Refresh journal: a refresh killed after the issuer answered is completed from the journal, never
repeated with the spent refresh token; stale and torn journals are dropped."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cliproxy.auth import journal
from cliproxy.auth.journal import journal_path, replay_journal
from cliproxy.auth.locking import account_lock_sync
from cliproxy.auth.refresh import RefreshError, TokenRefresher
from cliproxy.auth.store import STATUS_KEY, AccountFileError, load_account, load_accounts, status_record
from tests.fakes.oauth_server import FakeOAuthServer

REPO = Path(__file__).resolve().parents[2]
DAY = 86400
# A real refresh in a child process that is SIGKILLed right after the journal write returns: the issuer
# has rotated the token, the journal holds the answer, the account file still holds the spent token.
# (In-process exchange, so that the write can be intercepted; by default a child process does it.)
CRASH_AFTER_JOURNAL = """
import asyncio, os, signal, sys
import httpx
import cliproxy.auth.refresh as refresh
from cliproxy.auth.store import load_account
real = refresh.write_journal
def write_then_die(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGKILL)
refresh.write_journal = write_then_die
refresher = refresh.TokenRefresher(sys.argv[1], client_factory=lambda: httpx.Client(trust_env=False))
asyncio.run(refresher.ensure_fresh(load_account(sys.argv[2]), force=True))
"""
# The default exchange: the refresher is SIGKILLed while its request is at the (slow) issuer.
KILLED_WHILE_AT_ISSUER = """
import asyncio, sys
import cliproxy.auth.refresh as refresh
from cliproxy.auth.store import load_account
asyncio.run(refresh.TokenRefresher(sys.argv[1]).ensure_fresh(load_account(sys.argv[2]), force=True))
"""


@pytest.fixture
def srv():
    with FakeOAuthServer(access_ttl=10 * DAY) as server:
        yield server


def tokens(path: Path) -> tuple[str, str]:
    data = json.loads(path.read_text())
    return data["access_token"], data["refresh_token"]


def crash_after_journal(srv: FakeOAuthServer, path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_JOURNAL, srv.url, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def config(srv: FakeOAuthServer, tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"auth-dir: {tmp_path / 'auth'}\noauth-issuer: {srv.url}\n")
    return cfg


def journal_tokens(path: Path) -> tuple[str, str]:
    body = journal_path(path).read_bytes().partition(b"\n")[2]
    answer = json.loads(body)
    return answer["access_token"], answer["refresh_token"]


# -- a crash right after the journal write ------------------------------------------------------------
async def test_crash_after_journal_is_completed_by_the_next_refresh_without_a_network_call(srv, tmp_path, caplog):
    path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY)
    old_access, old_refresh = tokens(path)
    crash_after_journal(srv, path)
    assert tokens(path) == (old_access, old_refresh)  # the crash came before the account file was written
    new_access, new_refresh = journal_tokens(path)
    assert srv.current_refresh_token("a@example.com") == new_refresh and srv.refresh_count() == 1
    assert journal_path(path).stat().st_mode & 0o777 == 0o600
    assert not journal_path(path).name.endswith(".json")

    caplog.set_level(logging.DEBUG)
    fresh = await TokenRefresher(srv.url).ensure_fresh(load_account(path))
    assert (fresh.access_token, fresh.refresh_token) == (new_access, new_refresh)
    assert tokens(path) == (new_access, new_refresh) and not journal_path(path).exists()
    assert srv.refresh_count() == 1 and srv.reused_count == 0  # adopted from the journal, nothing re-sent
    assert len(srv.refresh_requests()) == 1
    for secret in (old_access, old_refresh, new_access, new_refresh):
        assert secret not in caplog.text
    await TokenRefresher(srv.url).ensure_fresh(fresh, force=True)  # the login goes on rotating
    assert srv.refresh_count() == 2 and srv.reused_count == 0


async def test_refresher_killed_while_its_request_is_at_the_issuer_loses_nothing(tmp_path):
    """The exchange runs in a child process holding the account's lock: it outlives its parent, journals
    the answer, and only then lets the next refresher in, which adopts the journaled tokens."""
    with FakeOAuthServer(access_ttl=10 * DAY, latency=1.0) as srv:
        path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY)
        old_access, old_refresh = tokens(path)
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WHILE_AT_ISSUER, srv.url, str(path)], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO
        )
        while not srv.refresh_requests():
            await asyncio.sleep(0.01)
            assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # the issuer is still working on the request
        proc.wait(10)
        assert tokens(path) == (old_access, old_refresh)
        fresh = await TokenRefresher(srv.url).ensure_fresh(load_account(path))  # waits for the lock
        assert fresh.refresh_token == srv.current_refresh_token("a@example.com") != old_refresh
        assert tokens(path) == (fresh.access_token, fresh.refresh_token) and not journal_path(path).exists()
        assert len(srv.refresh_requests()) == 1 and srv.reused_count == 0


def test_crash_after_journal_is_completed_by_load_accounts(srv, tmp_path):
    path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY, prefix="work")
    crash_after_journal(srv, path)
    new_access, new_refresh = journal_tokens(path)
    [account] = load_accounts(tmp_path)  # what the proxy does at start and on every auth-dir change
    assert (account.access_token, account.refresh_token) == (new_access, new_refresh)
    assert account.data["prefix"] == "work" and not account.expired()
    assert not journal_path(path).exists() and path.stat().st_mode & 0o777 == 0o600
    assert [a.name for a in load_accounts(tmp_path)] == [path.name]


def test_cli_refresh_after_a_crash_spends_the_journaled_token(srv, tmp_path):
    from scripts import cli

    path = srv.make_account(tmp_path / "auth", email="a@example.com", expires_in=300, age=10 * DAY)
    crash_after_journal(srv, path)
    assert cli.main(["refresh", "--all", "--config", str(config(srv, tmp_path))]) == 0
    assert srv.refresh_count() == 2 and srv.reused_count == 0
    assert tokens(path)[1] == srv.current_refresh_token("a@example.com")


def test_load_accounts_leaves_a_journal_to_the_lock_holder(srv, tmp_path):
    path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY)
    crash_after_journal(srv, path)
    with account_lock_sync(path):  # a refresh in progress elsewhere completes its own journal
        [account] = load_accounts(tmp_path)
        assert journal_path(path).exists() and account.refresh_token != srv.current_refresh_token("a@example.com")
    [account] = load_accounts(tmp_path)
    assert account.refresh_token == srv.current_refresh_token("a@example.com") and not journal_path(path).exists()


# -- replay outcomes ------------------------------------------------------------------------------------
def _answer(srv: FakeOAuthServer, path: Path) -> bytes:
    """A real rotation at the issuer for the account in `path`, as the raw answer bytes."""
    data = json.loads(path.read_text())
    lineage = srv.refresh_tokens[data["refresh_token"]]
    return json.dumps(srv.issue(srv.lineages[lineage].identity, lineage=lineage)).encode()


def _write(path: Path, spent: str, body: bytes) -> None:
    journal.write_journal(path, journal.journal_header(spent), body)


@pytest.mark.parametrize(
    "case, outcome, applied",
    [
        ("crashed-before-account-write", "replayed", True),
        ("replayed-then-crashed-before-unlink", "stale", True),  # replay is idempotent
        ("account-replaced-by-new-login", "stale", False),
        ("torn-mid-body", "torn", False),
        ("empty", "torn", False),
        ("not-a-journal", "torn", False),
        ("answer-without-access-token", "torn", False),
        ("account-removed", "orphan", False),
    ],
)
def test_replay(srv, tmp_path, case, outcome, applied, caplog):
    path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY, **{STATUS_KEY: None})
    old_access, old_refresh = tokens(path)
    body = _answer(srv, path)
    answer = json.loads(body)
    _write(path, old_refresh, body)
    if case == "replayed-then-crashed-before-unlink":
        saved = journal_path(path).read_bytes()
        assert replay_journal(path) == "replayed"
        journal_path(path).write_bytes(saved)
    elif case == "account-replaced-by-new-login":
        srv.make_account(tmp_path, email="a@example.com", name=path.name)
    elif case == "torn-mid-body":
        raw = journal_path(path).read_bytes()
        journal_path(path).write_bytes(raw[: len(raw) - 40])
    elif case == "empty":
        journal_path(path).write_bytes(b"")
    elif case == "not-a-journal":
        journal_path(path).write_bytes(body)
    elif case == "answer-without-access-token":
        _write(path, old_refresh, json.dumps({"refresh_token": answer["refresh_token"]}).encode())
    elif case == "account-removed":
        path.unlink()
    before = path.read_text() if path.exists() else None
    assert replay_journal(path) == outcome
    assert not journal_path(path).exists()
    assert replay_journal(path) is None  # nothing left to do
    if applied:
        assert tokens(path) == (answer["access_token"], answer["refresh_token"])
        assert STATUS_KEY not in json.loads(path.read_text())
    elif path.exists() and case != "account-replaced-by-new-login":
        assert path.read_text() == before and tokens(path) == (old_access, old_refresh)
    for secret in (old_access, old_refresh, answer["access_token"], answer["refresh_token"]):
        assert secret not in caplog.text


def test_replay_clears_a_needs_login_mark_of_the_spent_token(srv, tmp_path):
    path = srv.make_account(tmp_path, email="a@example.com")
    _, old_refresh = tokens(path)
    data = json.loads(path.read_text())
    data[STATUS_KEY] = status_record("refresh_token_reused", "x", old_refresh)
    path.write_text(json.dumps(data))
    _write(path, old_refresh, _answer(srv, path))
    assert replay_journal(path) == "replayed" and not load_account(path).needs_login


def test_a_journal_that_cannot_be_applied_is_kept_and_nothing_is_sent(srv, tmp_path, monkeypatch):
    path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY)
    account = load_account(path)
    _write(path, account.refresh_token, _answer(srv, path))
    requests = len(srv.requests)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the account file cannot be rewritten
        m.setattr(journal, "update_account_file", disk_full)
        with pytest.raises(RefreshError) as err:
            asyncio.run(TokenRefresher(srv.url).ensure_fresh(account))
        assert err.value.code == "journal_pending" and not err.value.permanent
        assert load_accounts(tmp_path)[0].refresh_token == account.refresh_token  # logged, not raised
    path.write_text("{torn")  # the account file is broken: no replay, no refresh
    with pytest.raises(AccountFileError):
        replay_journal(path)
    with pytest.raises(RefreshError):
        asyncio.run(TokenRefresher(srv.url).ensure_fresh(account))
    assert journal_path(path).exists()
    assert len(srv.requests) == requests and srv.reused_count == 0


# -- saving fails after the answer ------------------------------------------------------------------------
async def test_unwritable_account_keeps_the_answer_in_the_journal(srv, tmp_path, monkeypatch):
    path = srv.make_account(tmp_path, email="a@example.com", expires_in=300, age=10 * DAY)
    import cliproxy.auth.refresh as refresh

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(refresh, "update_account_file", disk_full)
        with pytest.raises(RefreshError) as err:
            await TokenRefresher(srv.url).ensure_fresh(load_account(path))
    assert err.value.code == "persist_failed" and not err.value.permanent  # the login is not lost
    assert journal_path(path).name in str(err.value)
    assert journal_tokens(path)[1] == srv.current_refresh_token("a@example.com")
    fresh = await TokenRefresher(srv.url).ensure_fresh(load_account(path))  # the disk has room again
    assert fresh.refresh_token == srv.current_refresh_token("a@example.com")
    assert srv.refresh_count() == 1 and srv.reused_count == 0 and not journal_path(path).exists()


def test_logout_revokes_the_journaled_login(srv, tmp_path):
    from scripts import cli

    path = srv.make_account(tmp_path / "auth", email="a@example.com", expires_in=300, age=10 * DAY)
    crash_after_journal(srv, path)
    live = srv.current_refresh_token("a@example.com")
    assert cli.main(["logout", path.name, "--config", str(config(srv, tmp_path))]) == 0
    assert srv.lineages[srv.refresh_tokens[live]].revoked
    assert sorted(p.name for p in (tmp_path / "auth").iterdir()) == []


def test_exchange_child_ignores_an_auth_package_in_the_working_directory(srv, tmp_path, monkeypatch):
    shadow = tmp_path / "auth"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    (shadow / "exchange.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    path = srv.make_account(tmp_path / "accounts", email="a@example.com", expires_in=300, age=10 * DAY)
    relative = load_account(path.relative_to(tmp_path))  # a relative auth dir works too
    fresh = asyncio.run(TokenRefresher(srv.url).ensure_fresh(relative))
    assert fresh.refresh_token == srv.current_refresh_token("a@example.com") == tokens(path)[1]
    assert srv.refresh_count() == 1 and not journal_path(path).exists()
