"""The `cliproxy` command against a PostgreSQL store (a real server; skips without one): login, accounts,
refresh, rest clear, logout, and `store import` / `store export` round trips with CLIProxyAPI files."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from rich.console import Console

from cliproxy.addons.store.pg_accounts import PgAccounts
from cliproxy.auth.store import load_accounts
from cliproxy.scripts import cli
from tests.fakes.oauth_server import FakeOAuthServer, Identity

DAY = 86400


@pytest.fixture
def srv():
    with FakeOAuthServer(
        access_ttl=10 * DAY, device_interval="0.05", device_approve_after=2, login_identity=Identity("new@example.com", "acct-new", "pro")
    ) as server:
        yield server


@pytest.fixture
def cfg(srv, tmp_path, pg_dsn, monkeypatch) -> Path:
    monkeypatch.delenv("CLIPROXY_STORE_DSN", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(f"oauth-issuer: {srv.url}\nstore: {pg_dsn}\nauth-dir: {tmp_path / 'unused'}\n")
    return path


@pytest.fixture
def store(pg_dsn):
    s = PgAccounts(pg_dsn)
    yield s
    s.close()


def run(*argv: str) -> tuple[int, str]:
    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    code = cli.main(list(argv), console=console)
    return code, console.export_text()


def secrets_in(directory: Path) -> list[str]:
    return [a.data[k] for a in load_accounts(directory) for k in ("access_token", "refresh_token", "id_token")]


def test_import_export_round_trip(srv, cfg, store, tmp_path) -> None:
    auth = tmp_path / "auth"
    srv.make_account(auth, email="a@example.com", prefix="team-a")  # an extra key CLIProxyAPI keeps
    srv.make_account(auth, email="b@example.com", plan="pro")
    (auth / "notes.txt").write_text("not an account")
    code, out = run("store", "import", str(auth), "--config", str(cfg))
    assert code == 0, out
    assert "Imported 2 account(s)" in out
    assert sorted(a.name for a in store.load()) == ["codex-a@example.com-plus.json", "codex-b@example.com-pro.json"]
    code, out = run("store", "import", str(auth), "--config", str(cfg))  # again: nothing overwritten
    assert code == 0 and "2 skipped" in out

    out_dir = tmp_path / "exported"
    code, out = run("store", "export", str(out_dir), "--config", str(cfg))
    assert code == 0 and "Exported 2 account(s)" in out
    for original in sorted(auth.glob("*.json")):
        copy = out_dir / original.name
        assert json.loads(copy.read_text()) == json.loads(original.read_text())
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not list(out_dir.glob(".*"))  # no temp files left behind
    for secret in secrets_in(auth):
        assert secret[:20] not in out


def test_account_commands_work_on_the_database(srv, cfg, store, tmp_path) -> None:
    auth = tmp_path / "auth"
    srv.make_account(auth, email="due@example.com", expires_in=300, age=10 * DAY)
    assert run("store", "import", str(auth), "--config", str(cfg))[0] == 0
    name = "codex-due@example.com-plus.json"

    code, out = run("accounts", "--config", str(cfg))
    assert code == 0 and "due@example.com" in out and "Accounts in postgresql://" in out

    code, out = run("refresh", "due@example.com", "--config", str(cfg))
    assert code == 0, out
    assert srv.refresh_count() == 1
    assert store.get(name).refresh_token == srv.current_refresh_token("due@example.com")  # type: ignore[union-attr]
    assert json.loads((auth / name).read_text())["refresh_token"] != srv.current_refresh_token("due@example.com")  # files untouched

    store.write_state(name, {"rests": {"*": time.time() + 600}, "limited": ["*"]})
    code, out = run("rest", "clear", "due@example.com", "--config", str(cfg))
    assert code == 0 and store.read_state(name)["rests"] == {}

    token = store.get(name).refresh_token  # type: ignore[union-attr]
    code, out = run("logout", "due@example.com", "--config", str(cfg))
    assert code == 0 and "Removed due@example.com" in out and "revoked" in out
    assert store.load() == [] and srv.lineages[srv.refresh_tokens[token]].revoked
    code, out = run("logout", "due@example.com", "--config", str(cfg))
    assert code == 1 and "no account" in out


def test_login_goes_into_the_database(srv, cfg, store, tmp_path) -> None:
    code, out = run("login", "--device", "--no-browser", "--config", str(cfg))
    assert code == 0, out
    assert "Signed in as new@example.com (pro)" in out and "Stored codex-new@example.com-pro.json in postgresql://" in out
    [account] = store.load()
    assert account.email == "new@example.com" and account.account_id == "acct-new"
    assert not (tmp_path / "unused").exists()  # nothing written to the auth dir
    store.put(account.name, {**account.data, "prefix": "kept"})
    code, out = run("login", "--device", "--no-browser", "--config", str(cfg))  # signing in again updates the row
    assert code == 0 and "Updated codex-new@example.com-pro.json" in out
    [again] = store.load()
    assert again.data["prefix"] == "kept" and again.refresh_token != account.refresh_token


def test_store_commands_need_a_store_and_an_unreachable_one_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CLIPROXY_STORE_DSN", raising=False)
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"auth-dir: {tmp_path}\n")
    code, out = run("store", "export", str(tmp_path / "x"), "--config", str(plain))
    assert code == 1 and "no store configured" in out
    monkeypatch.setenv("CLIPROXY_STORE_DSN", "postgresql://me:hunter2@127.0.0.1:1/db")
    code, out = run("accounts", "--config", str(plain))
    assert code == 1 and "127.0.0.1" in out and "hunter2" not in out and "Traceback" not in out


def test_import_codex_and_a_second_workspace_of_one_email(srv, cfg, store, tmp_path) -> None:
    issued = srv.issue(Identity("cx@example.com", "acct-cx", "plus"))
    src = tmp_path / "auth.json"
    tokens = {k: issued[k] for k in ("id_token", "access_token", "refresh_token")}
    src.write_text(json.dumps({"tokens": {**tokens, "account_id": "acct-cx"}, "last_refresh": "2026-01-01T00:00:00Z"}))
    code, out = run("import-codex", str(src), "--config", str(cfg))
    assert code == 0 and "Imported cx@example.com" in out and "Stored codex-cx@example.com-plus.json" in out
    assert issued["refresh_token"] not in out
    other = srv.issue(Identity("cx@example.com", "acct-other", "plus"))  # the same email in another workspace
    tokens = {k: other[k] for k in ("id_token", "access_token", "refresh_token")}
    src.write_text(json.dumps({"tokens": {**tokens, "account_id": "acct-other"}, "last_refresh": "2026-01-01T00:00:00Z"}))
    assert run("import-codex", str(src), "--config", str(cfg))[0] == 0
    names = sorted(a.name for a in store.load())
    assert len(names) == 2 and "codex-cx@example.com-plus.json" in names
    hashed = next(n for n in names if n != "codex-cx@example.com-plus.json")
    assert hashed.startswith("codex-") and hashed.endswith("-cx@example.com-plus.json")
    assert store.get(hashed).account_id == "acct-other"  # type: ignore[union-attr]
