"""Browser sign-in end to end against the fake issuer: PKCE, loopback callback, saved account file."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cliproxy.auth.constants import CLIENT_ID
from cliproxy.auth.login import browser_login
from cliproxy.auth.oauth import LoginError, OAuthError, build_authorize_url, challenge_for, generate_pkce
from cliproxy.auth.store import load_accounts
from tests.fakes.oauth_server import FakeOAuthServer, Identity, browse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def srv():
    with FakeOAuthServer(login_identity=Identity("me@example.com", "acct-1234", "Pro")) as server:
        yield server


def test_pkce_and_authorize_url():
    pkce = generate_pkce()
    assert len(pkce.verifier) == 128 and pkce.challenge == challenge_for(pkce.verifier) and len(pkce.challenge) == 43
    assert pkce.verifier not in repr(pkce)
    url = build_authorize_url("https://auth.example/", "st", pkce.challenge, "http://localhost:1455/auth/callback")
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.netloc == "auth.example" and parts.path == "/oauth/authorize"
    assert q == {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": "http://localhost:1455/auth/callback",
        "scope": "openid email profile offline_access",
        "state": "st",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "prompt": "login",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
    }


def test_browser_login_end_to_end(srv, tmp_path, caplog):
    caplog.set_level("DEBUG", logger="cliproxy.auth")
    auth_dir = tmp_path / "auth"
    pages = []
    shown = []
    result = browser_login(
        auth_dir,
        srv.url,
        open_browser=lambda url: pages.append(browse(url)) or True,
        on_url=lambda url, opened: shown.append((url, opened)),
        ports=(free_port(),),
        timeout=10,
    )
    # the "browser" went authorize → 302 → callback → 302 → /success
    assert pages[0].status_code == 200 and "Signed in" in pages[0].text and pages[0].url.path == "/success"
    assert shown and shown[0][1] is True
    path = result.path
    assert path == auth_dir / "codex-me@example.com-pro.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(auth_dir.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["type"] == "codex" and data["email"] == "me@example.com" and data["account_id"] == "acct-1234"
    assert data["refresh_token"] == srv.current_refresh_token("me@example.com")
    assert data["expired"] and data["last_refresh"] and data["disabled"] is False
    # the code exchange used the same redirect URI and a verifier matching the challenge
    exchange = srv.requests_to("/oauth/token")[0]
    authorize = srv.requests_to("/oauth/authorize")[0]
    assert exchange.form["redirect_uri"] == authorize.query["redirect_uri"]
    assert challenge_for(exchange.form["code_verifier"]) == authorize.query["code_challenge"]
    assert exchange.status == 200 and [a.name for a in load_accounts(auth_dir)] == [path.name]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cliproxy.auth"))
    assert "me@example.com" in ours  # it did log, just no secrets
    for key in ("access_token", "refresh_token", "id_token"):
        assert data[key] not in ours and data[key][:20] not in ours
    assert exchange.form["code"] not in ours and exchange.form["code_verifier"] not in ours


def test_relogin_updates_the_same_file_and_keeps_user_keys(srv, tmp_path):
    auth_dir = tmp_path / "auth"
    port = free_port()
    first = browser_login(auth_dir, srv.url, open_browser=browse, ports=(port,), timeout=10)
    data = json.loads(first.path.read_text())
    data.update(prefix="work", note="mine", disabled=True, cliproxy_status={"state": "needs-login"})
    first.path.write_text(json.dumps(data))
    second = browser_login(auth_dir, srv.url, open_browser=browse, ports=(port,), timeout=10)
    assert second.path == first.path and second.replaced
    data = json.loads(second.path.read_text())
    assert data["prefix"] == "work" and data["note"] == "mine" and data["disabled"] is False
    assert "cliproxy_status" not in data


def _login_in_thread(srv, auth_dir, port, timeout=10.0):
    box = {}

    def run():
        try:
            box["result"] = browser_login(
                auth_dir, srv.url, open_browser=None, on_url=lambda url, opened: box.setdefault("url", url), ports=(port,), timeout=timeout
            )
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while "url" not in box and time.monotonic() < deadline:
        time.sleep(0.01)
    return thread, box


def test_state_mismatch_fails_with_an_error_page(srv, tmp_path):
    port = free_port()
    thread, box = _login_in_thread(srv, tmp_path / "auth", port)
    page = httpx.get(f"http://127.0.0.1:{port}/auth/callback?code=abc&state=forged", trust_env=False)
    thread.join(5)
    assert page.status_code == 400 and "state mismatch" in page.text
    assert isinstance(box["error"], LoginError) and box["error"].code == "invalid_state"
    assert not srv.requests_to("/oauth/token")  # the code was never redeemed
    assert not (tmp_path / "auth").exists() or not list((tmp_path / "auth").glob("*.json"))


def test_error_parameter_from_issuer(tmp_path):
    with FakeOAuthServer(authorize_error="access_denied") as srv:
        with pytest.raises(OAuthError) as info:
            browser_login(tmp_path / "auth", srv.url, open_browser=browse, ports=(free_port(),), timeout=10)
    assert info.value.error == "access_denied" and "access_denied" in str(info.value)
    assert not list((tmp_path / "auth").glob("*.json")) if (tmp_path / "auth").exists() else True


def test_missing_code_and_later_callbacks(srv, tmp_path):
    port = free_port()
    thread, box = _login_in_thread(srv, tmp_path / "auth", port)
    state = parse_qs(urlsplit(box["url"]).query)["state"][0]
    page = httpx.get(f"http://127.0.0.1:{port}/auth/callback?state={state}", trust_env=False)
    thread.join(5)
    assert page.status_code == 400 and box["error"].code == "no_code"


def test_bad_code_shows_error_page(srv, tmp_path):
    port = free_port()
    thread, box = _login_in_thread(srv, tmp_path / "auth", port)
    state = parse_qs(urlsplit(box["url"]).query)["state"][0]
    page = httpx.get(f"http://127.0.0.1:{port}/auth/callback?state={state}&code=bogus", trust_env=False)
    thread.join(5)
    assert page.status_code == 400 and "Sign-in failed" in page.text
    assert isinstance(box["error"], OAuthError) and box["error"].error == "invalid_grant"


def test_timeout(srv, tmp_path):
    start = time.monotonic()
    with pytest.raises(LoginError) as info:
        browser_login(tmp_path / "auth", srv.url, open_browser=None, ports=(free_port(),), timeout=0.3)
    assert info.value.code == "callback_timeout" and "--device" in str(info.value)
    assert time.monotonic() - start < 3


def test_port_in_use_falls_back_then_explains(srv, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        busy_port, free = busy.getsockname()[1], free_port()
        result = browser_login(tmp_path / "auth", srv.url, open_browser=browse, ports=(busy_port, free), timeout=10)
        redirect = srv.requests_to("/oauth/authorize")[-1].query["redirect_uri"]
        assert redirect == f"http://localhost:{free}/auth/callback" and result.path.exists()
        other = socket.socket()
        other.bind(("127.0.0.1", 0))
        other.listen()
        with other, pytest.raises(LoginError) as info:
            browser_login(tmp_path / "auth", srv.url, open_browser=browse, ports=(busy_port, other.getsockname()[1]), timeout=5)
        assert info.value.code == "port_in_use"
        message = str(info.value)
        assert str(busy_port) in message and "--device" in message and "in use" in message
    finally:
        busy.close()


def test_broken_browser_is_not_fatal(srv, tmp_path):
    shown = []

    def broken(url):
        raise RuntimeError("no display")

    port = free_port()
    box = {}

    def run():
        box["r"] = browser_login(
            tmp_path / "auth",
            srv.url,
            open_browser=broken,
            on_url=lambda url, opened: shown.append((url, opened)),
            ports=(port,),
            timeout=10,
        )

    thread = threading.Thread(target=run)
    thread.start()
    while not shown:
        time.sleep(0.01)
    assert shown[0][1] is False  # so the caller prints the URL
    browse(shown[0][0])
    thread.join(5)
    assert box["r"].path.exists()


def test_cancel_route_ends_the_login(srv, tmp_path):
    port = free_port()
    thread, box = _login_in_thread(srv, tmp_path / "auth", port)
    page = httpx.get(f"http://127.0.0.1:{port}/cancel", trust_env=False)
    thread.join(5)
    assert page.status_code == 200 and box["error"].code == "cancelled"
