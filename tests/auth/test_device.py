"""Device-code sign-in against the fake issuer: pending → approved, slow_down, expiry, denial."""

from __future__ import annotations

import json

import httpx
import pytest

from cliproxy.auth.device import DEFAULT_INTERVAL, device_login, parse_interval
from cliproxy.auth.oauth import LoginError, challenge_for
from tests.fakes.oauth_server import FakeOAuthServer, Identity


class FakeTime:
    """A clock whose sleep advances time instantly, recording every sleep."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.mark.parametrize("status", [403, 404])
def test_pending_then_approved(tmp_path, status):
    ft = FakeTime()
    codes, progress = [], []
    with FakeOAuthServer(
        device_approve_after=3, device_interval="5", pending_status=status, login_identity=Identity("dev@example.com", "acct-dev", "plus")
    ) as srv:
        result = device_login(tmp_path / "auth", srv.url, on_code=codes.append, on_progress=progress.append, sleep=ft.sleep, clock=ft.clock)
        polls = srv.requests_to("/api/accounts/deviceauth/token")
        exchange = srv.requests_to("/oauth/token")[0]
        assert [p.status for p in polls] == [status, status, 200]
        assert exchange.form["redirect_uri"] == srv.url + "/deviceauth/callback"
        assert challenge_for(exchange.form["code_verifier"])  # the server-made verifier was passed on
        usercode_req = srv.requests_to("/api/accounts/deviceauth/usercode")[0]
        assert json.loads(usercode_req.form and json.dumps(usercode_req.form))["client_id"] == "app_EMoamEEZ73f0CkXaXp7hrann"
        data = json.loads(result.path.read_text())
        assert data["refresh_token"] == srv.current_refresh_token("dev@example.com")
    assert codes[0].verification_url == srv.url + "/codex/device" and codes[0].interval == 5.0
    assert codes[0].user_code in str(codes[0]) and codes[0].device_auth_id not in repr(codes[0])
    assert sum(ft.sleeps) == pytest.approx(15) and max(ft.sleeps) <= 1.0  # 3 waits of 5 s in 1-s steps
    assert progress and progress[0] == pytest.approx(900) and progress == sorted(progress, reverse=True)


def test_approve_from_another_thread_in_real_time(tmp_path):
    with FakeOAuthServer(device_interval="0.1") as srv:
        import threading

        def approve_later(code):
            threading.Timer(0.3, srv.approve, args=(code.user_code,)).start()

        result = device_login(tmp_path / "auth", srv.url, on_code=approve_later)
        assert result.path.exists()
        assert 2 <= len(srv.requests_to("/api/accounts/deviceauth/token")) <= 6


def test_slow_down_grows_the_interval(tmp_path):
    ft = FakeTime()
    with FakeOAuthServer(device_approve_after=4, device_slow_down=2, device_interval="2") as srv:
        device_login(tmp_path / "auth", srv.url, sleep=ft.sleep, clock=ft.clock)
        times = [r.at for r in srv.requests_to("/api/accounts/deviceauth/token")]
    assert len(times) == 4
    # waits: 2 s, then 7 s and 12 s after two slow_downs, then 12 s
    assert sum(ft.sleeps) == pytest.approx(2 + 7 + 12 + 12)


def test_expired_code_and_client_timeout(tmp_path):
    with FakeOAuthServer(device_expires_in=0, device_interval="0.05") as srv:
        with pytest.raises(LoginError) as info:
            device_login(tmp_path / "auth", srv.url)
    assert info.value.code == "device_expired" and "--device" in str(info.value)

    ft = FakeTime()
    with FakeOAuthServer() as srv:  # never approved
        with pytest.raises(LoginError) as info:
            device_login(tmp_path / "auth", srv.url, sleep=ft.sleep, clock=ft.clock, timeout=30)
        polls = len(srv.requests_to("/api/accounts/deviceauth/token"))
    assert info.value.code == "device_timeout" and "not approved" in str(info.value)
    assert ft.t - 1000 == pytest.approx(30) and polls == pytest.approx(29, abs=1)  # interval "1" until the deadline


def test_denied(tmp_path):
    with FakeOAuthServer(device_interval="0.05") as srv:
        with pytest.raises(LoginError) as info:
            device_login(tmp_path / "auth", srv.url, on_code=lambda c: srv.deny(c.user_code))
    assert info.value.code == "device_denied"


def test_issuer_without_device_flow(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(LoginError) as info:
        device_login(tmp_path / "auth", "https://issuer.test", client=client)
    assert info.value.code == "device_unavailable" and "cliproxy login" in str(info.value)


@pytest.mark.parametrize(
    "value, expected",
    [("5", 5.0), (3, 3.0), ("0.5", 0.5), (None, DEFAULT_INTERVAL), ("x", DEFAULT_INTERVAL), (0, DEFAULT_INTERVAL), (-1, DEFAULT_INTERVAL)],
)
def test_interval_parsing(value, expected):
    assert parse_interval(value) == expected
