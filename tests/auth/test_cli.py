"""The `cliproxy` command, in-process and as the installed console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from cliproxy.auth.quota import write_state
from cliproxy.auth.store import STATUS_KEY, load_account, status_record
from cliproxy.scripts import cli
from tests.fakes.oauth_server import CLIENT_ID, FakeOAuthServer, Identity, browse

DAY = 86400
CLIPROXY = Path(sys.executable).parent / "cliproxy"


@pytest.fixture
def srv():
    with FakeOAuthServer(
        access_ttl=10 * DAY, device_interval="0.05", device_approve_after=2, login_identity=Identity("new@example.com", "acct-new", "pro")
    ) as server:
        yield server


def run(*argv: str) -> tuple[int, str]:
    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    code = cli.main(list(argv), console=console)
    return code, console.export_text()


def all_secrets(auth_dir: Path) -> list[str]:
    out = []
    for p in auth_dir.glob("*.json"):
        try:
            data = json.loads(p.read_text())
        except ValueError:
            continue
        out += [data[k] for k in ("access_token", "refresh_token", "id_token") if isinstance(data.get(k), str)]
    return out


def assert_clean(text: str, auth_dir: Path, *extra: str) -> None:
    assert "Traceback" not in text
    for secret in [*all_secrets(auth_dir), *extra]:
        assert secret not in text and secret[:20] not in text


@pytest.fixture
def populated(srv, tmp_path, monkeypatch):
    """An auth dir with one account of each state, and ./config.yaml naming the fake issuer."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(f"oauth-issuer: {srv.url}\n")
    auth = tmp_path / "auth"
    ok = srv.make_account(auth, email="ok@example.com", plan="plus")
    srv.make_account(auth, email="cool@example.com", plan="pro")
    dead = srv.make_account(auth, email="dead@example.com", plan="team")
    data = json.loads(dead.read_text())
    data[STATUS_KEY] = status_record("refresh_token_reused", "cannot refresh: its refresh token was already used", data["refresh_token"])
    dead.write_text(json.dumps(data))
    srv.make_account(auth, email="off@example.com", disabled=True)
    srv.make_account(auth, email="old@example.com", expires_in=-2 * 3600, age=10 * DAY)
    now = datetime.now(UTC)
    write_state(
        auth,
        ok.name,
        {
            "quota": {
                "primary": {"used_percent": 12.5, "window_minutes": 300, "resets_at": (now + timedelta(hours=3)).isoformat()},
                "secondary": {"used_percent": 40, "window_minutes": 10080, "resets_at": (now + timedelta(days=2)).isoformat()},
            },
            "cooldown_until": None,
            "updated_at": now.isoformat(),
        },
    )
    write_state(auth, "codex-cool@example.com-pro.json", {"cooldown_until": (now + timedelta(minutes=12)).isoformat()})
    (auth / ".cliproxy-state" / "codex-off@example.com-plus.json").write_text("{garbage")
    return auth


def test_accounts_table(populated, capsys):
    (populated / "broken.json").write_text("{nope")
    code, out = run("accounts", "--auth-dir", str(populated))
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "codex-" in line}
    assert set(rows) == {
        f"codex-{e}@example.com-{p}.json" for e, p in [("ok", "plus"), ("cool", "pro"), ("dead", "team"), ("off", "plus"), ("old", "plus")]
    }
    ok = rows["codex-ok@example.com-plus.json"]
    assert "ok@example.com" in ok and "plus" in ok and "in 9d 23h" in ok and " ok " in ok
    assert "5h 12.5% (resets in 2h 59m)" in ok or "5h 12.5% (resets in 3h)" in ok
    assert "week 40%" in out
    assert (
        "cooling down (11m)" in rows["codex-cool@example.com-pro.json"] or "cooling down (12m)" in rows["codex-cool@example.com-pro.json"]
    )
    assert "needs-login" in rows["codex-dead@example.com-team.json"]
    assert "disabled" in rows["codex-off@example.com-plus.json"]
    assert "expired 2h ago" in rows["codex-old@example.com-plus.json"] and " expired " in rows["codex-old@example.com-plus.json"]
    for header in ("Account", "Email", "Plan", "Expires", "Last refresh", "State", "Quota"):
        assert header in out
    err = capsys.readouterr().err
    assert "broken.json" in err and "Traceback" not in err
    assert_clean(out + err, populated)


def test_accounts_empty(tmp_path):
    code, out = run("accounts", "--auth-dir", str(tmp_path / "none"))
    assert code == 0 and "No accounts" in out and "cliproxy login" in out


def test_refresh_commands(populated, srv):
    code, out = run("refresh", "ok@example.com", "--auth-dir", str(populated))
    assert code == 0 and "ok@example.com: refreshed" in out and srv.refresh_count("ok@example.com") == 1
    code, out = run("--auth-dir", str(populated), "refresh", "codex-cool@example.com-pro")  # stem, option first
    assert code == 0 and srv.refresh_count("cool@example.com") == 1
    code, out = run("refresh", "dead@example.com", "--auth-dir", str(populated))
    assert code == 1 and "already used" in out and srv.refresh_count("dead@example.com") == 0
    code, out = run("refresh", "--auth-dir", str(populated))
    assert code == 1 and "--all" in out
    code, out = run("refresh", "nobody@example.com", "--auth-dir", str(populated))
    assert code == 1 and "no account 'nobody@example.com'" in out
    code, out = run("refresh", "--all", "--auth-dir", str(populated))
    assert code == 1  # the dead account fails, the others are refreshed
    assert out.count("refreshed") == 4 and "dead@example.com" in out
    assert_clean(out, populated)


def test_refresh_uses_issuer_from_config(srv, tmp_path, monkeypatch):
    auth = tmp_path / "auth"
    srv.make_account(auth, email="cfg@example.com")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"auth-dir: {auth}\noauth-issuer: {srv.url}\n")
    code, out = run("refresh", "--config", str(cfg))
    assert code == 0 and srv.refresh_count() == 1
    monkeypatch.chdir(tmp_path)  # ./config.yaml is the default
    code, out = run("refresh", "cfg@example.com")
    assert code == 0 and srv.refresh_count() == 2
    # --auth-dir wins over the config
    code, out = run("accounts", "--auth-dir", str(tmp_path / "other"))
    assert "No accounts" in out


def test_config_errors(tmp_path):
    code, out = run("accounts", "--config", str(tmp_path / "missing.yaml"))
    assert code == 1 and "not found" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("auth-dir: [unclosed\n")
    code, out = run("accounts", "--config", str(bad))
    assert code == 1 and "not valid YAML" in out
    bad.write_text("oauth-issuer: ftp://x\n")
    code, out = run("accounts", "--config", str(bad))
    assert code == 1 and "oauth-issuer" in out


def test_logout(populated):
    path = populated / "codex-ok@example.com-plus.json"
    run("refresh", "ok@example.com", "--auth-dir", str(populated))  # creates the lock file
    code, out = run("logout", "ok@example.com", "--auth-dir", str(populated))
    assert code == 0 and "Removed ok@example.com" in out
    assert not path.exists() and not (populated / f".{path.name}.lock").exists()
    assert not (populated / ".cliproxy-state" / path.name).exists()
    code, out = run("logout", "ok@example.com", "--auth-dir", str(populated))
    assert code == 1 and "no account" in out


def test_logout_revokes_the_login_unless_kept(populated, srv):
    token = json.loads((populated / "codex-ok@example.com-plus.json").read_text())["refresh_token"]
    code, out = run("logout", "ok@example.com", "--auth-dir", str(populated))
    assert code == 0 and "revoked" in out
    sent = srv.requests_to("/oauth/revoke")[-1]
    assert sent.form == {"token": token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID} and sent.status == 200
    assert srv.lineages[srv.refresh_tokens[token]].revoked  # the login is over at the issuer too
    assert_clean(out, populated, token)

    kept = json.loads((populated / "codex-cool@example.com-pro.json").read_text())["refresh_token"]
    code, out = run("logout", "cool@example.com", "--keep-login", "--auth-dir", str(populated))
    assert code == 0 and len(srv.requests_to("/oauth/revoke")) == 1 and not srv.lineages[srv.refresh_tokens[kept]].revoked


def test_logout_when_the_issuer_is_unreachable(populated, tmp_path):
    (tmp_path / "config.yaml").write_text("oauth-issuer: http://127.0.0.1:9\n")
    code, out = run("logout", "ok@example.com", "--auth-dir", str(populated))
    assert code == 0 and "Removed ok@example.com" in out and "could not be revoked" in out


def test_login_device(srv, tmp_path):
    auth = tmp_path / "auth"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"oauth-issuer: {srv.url}\n")
    code, out = run("login", "codex", "--device", "--no-browser", "--auth-dir", str(auth), "--config", str(cfg))
    assert code == 0, out
    code_shown = srv.devices and next(iter(srv.devices.values())).user_code
    assert code_shown in out and srv.url + "/codex/device" in out
    assert "Signed in as new@example.com (pro)" in out and (auth / "codex-new@example.com-pro.json").exists()
    assert_clean(out, auth)


def test_login_browser(srv, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cli, "CALLBACK_PORTS", (port,))
    monkeypatch.setattr(cli.webbrowser, "open", lambda url: browse(url).status_code == 200)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"oauth-issuer: {srv.url}\nauth-dir: {tmp_path / 'auth'}\n")
    code, out = run("login", "--config", str(cfg))
    assert code == 0, out
    assert "/oauth/authorize?" in out and "Signed in as new@example.com" in out
    assert_clean(out, tmp_path / "auth")


def test_login_errors_are_short(srv, tmp_path, monkeypatch):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with busy:
        monkeypatch.setattr(cli, "CALLBACK_PORTS", (busy.getsockname()[1],))
        code, out = run("login", "--no-browser", "--auth-dir", str(tmp_path), "--config", os.devnull)
    assert code == 1 and "error:" in out and "--device" in out and "Traceback" not in out
    monkeypatch.setattr(cli, "CALLBACK_PORTS", (0,))
    code, out = run("login", "--no-browser", "--timeout", "0.2", "--auth-dir", str(tmp_path), "--config", os.devnull)
    assert code == 1 and "timed out" in out


def test_import_codex(srv, tmp_path):
    issued = srv.issue(Identity("cx@example.com", "acct-cx", "plus"))
    src = tmp_path / "auth.json"
    src.write_text(
        json.dumps(
            {
                "OPENAI_API_KEY": None,
                "tokens": {**{k: issued[k] for k in ("id_token", "access_token", "refresh_token")}, "account_id": "acct-cx"},
                "last_refresh": "2026-01-01T00:00:00Z",
            }
        )
    )
    code, out = run("import-codex", str(src), "--auth-dir", str(tmp_path / "auth"))
    assert code == 0 and "Imported cx@example.com" in out and "Warning" in out and "codex logout" in out
    assert load_account(tmp_path / "auth" / "codex-cx@example.com-plus.json").email == "cx@example.com"
    assert_clean(out, tmp_path / "auth")
    src.write_text(json.dumps({"OPENAI_API_KEY": "sk-test-123456789", "tokens": None}))
    code, out = run("import-codex", str(src), "--auth-dir", str(tmp_path / "auth"))
    assert code == 1 and "API key" in out and "sk-test-123456789" not in out


def test_usage_errors():
    with pytest.raises(SystemExit) as info:
        cli.main(["login", "gemini"])
    assert info.value.code == 2
    code, out = run("refresh", "x", "--all")
    assert code == 2


def test_installed_console_script(populated, srv):
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(CLIPROXY), "accounts", "--auth-dir", str(populated)], capture_output=True, text=True, env=env, timeout=30, cwd=populated
    )
    assert done.returncode == 0, done.stderr
    assert "ok@example.com" in done.stdout and "needs-login" in done.stdout
    assert_clean(done.stdout + done.stderr, populated)
    done = subprocess.run(
        [str(CLIPROXY), "logout", "ghost", "--auth-dir", str(populated)], capture_output=True, text=True, env=env, timeout=30, cwd=populated
    )
    assert done.returncode == 1 and "no account 'ghost'" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([str(CLIPROXY), "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0 and "import-codex" in done.stdout
