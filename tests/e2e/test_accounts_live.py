"""Accounts inside the running proxy: refresh ahead of expiry, refresh on 401, two processes sharing
one auth dir, and account files added, changed and removed while it runs."""

import asyncio
import io
import json
import os
import time

import httpx
import openai
import pytest
from rich.console import Console

from cliproxy.auth.quota import read_state
from cliproxy.scripts import cli
from tests.fakes.codex_backend import default_responder, unauthorized
from tests.fakes.oauth_server import FakeOAuthServer
from tests.proxyproc import start_proxy

DAY = 24 * 3600


@pytest.fixture
def oauth():
    with FakeOAuthServer(access_ttl=10 * DAY, latency=0.2) as srv:
        yield srv


@pytest.fixture
def proxies(tmp_path, backend_server):
    started = []

    def start(issuer: str, name: str = "p"):
        p = start_proxy(
            tmp_path / name, {"auth-dir": str(tmp_path / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": issuer}
        )
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def chat(proxy, text="hi"):
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="x", max_retries=0)
    return c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": text}])


def accounts_output(auth_dir) -> str:
    console = Console(width=200, file=io.StringIO())
    assert cli.main(["--auth-dir", str(auth_dir), "accounts"], console=console) == 0
    return console.file.getvalue()


def tokens_sent(backend):
    return [r.headers["authorization"].removeprefix("Bearer ") for r in backend.received]


def file_tokens(path):
    data = json.loads(path.read_text())
    return data["access_token"], data["refresh_token"]


def test_token_close_to_expiry_is_refreshed_before_use(tmp_path, oauth, proxies, backend):
    path = oauth.make_account(tmp_path / "auth", email="a@example.com", expires_in=120, age=10 * DAY - 120)
    old_access, old_refresh = file_tokens(path)
    proxy = proxies(oauth.url)
    assert chat(proxy).choices[0].message.content == "You said: hi"
    new_access, new_refresh = file_tokens(path)
    assert oauth.refresh_count() == 1 and new_access != old_access and new_refresh != old_refresh
    assert tokens_sent(backend) == [new_access]  # the old token never went upstream
    assert oauth.current_refresh_token("a@example.com") == new_refresh  # the rotation was persisted
    assert os.stat(path).st_mode & 0o777 == 0o600
    chat(proxy, "again")
    assert oauth.refresh_count() == 1  # a fresh token is not refreshed again
    assert old_access not in proxy.log and new_access not in proxy.log and new_refresh not in proxy.log


def test_401_refreshes_once_and_retries_once(tmp_path, oauth, proxies, backend):
    path = oauth.make_account(tmp_path / "auth", email="a@example.com")  # valid for days, yet refused
    refused, _ = file_tokens(path)
    backend.responder = lambda req: unauthorized() if req.headers["authorization"] == f"Bearer {refused}" else default_responder(req)
    proxy = proxies(oauth.url)
    assert chat(proxy).choices[0].message.content == "You said: hi"
    assert oauth.refresh_count() == 1
    assert tokens_sent(backend) == [refused, file_tokens(path)[0]]


def test_401_after_a_refresh_is_not_retried_in_a_loop(tmp_path, oauth, proxies, backend):
    path = oauth.make_account(tmp_path / "auth", email="a@example.com")
    backend.responder = lambda req: unauthorized()
    proxy = proxies(oauth.url)
    with pytest.raises(openai.AuthenticationError) as e:
        chat(proxy)
    assert e.value.status_code == 401 and e.value.body["type"] == "authentication_error"
    assert oauth.refresh_count() == 1 and len(backend.received) == 2  # one refresh, one retry, then the error
    assert "cliproxy login" in e.value.message
    with pytest.raises(openai.APIStatusError) as e:
        chat(proxy, "again")
    assert e.value.status_code == 503 and "need a new login" in e.value.message  # parked, not hammered
    time.sleep(1.5)  # the proxy re-reads the auth dir (the refresh rewrote the file): still parked
    with pytest.raises(openai.APIStatusError):
        chat(proxy, "and again")
    assert len(backend.received) == 2 and oauth.refresh_count() == 1
    assert read_state(tmp_path / "auth", path.name)["refused"] is True
    assert "token refused" in accounts_output(tmp_path / "auth")


def test_two_proxies_100_concurrent_requests_on_an_expired_token_refresh_once(tmp_path, oauth, proxies, backend):
    path = oauth.make_account(tmp_path / "auth", email="a@example.com", expires_in=-60, age=10 * DAY + 60)
    expired, _ = file_tokens(path)
    one, two = proxies(oauth.url, "one"), proxies(oauth.url, "two")

    async def burst():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
            calls = [client.post(p.base_url + "/v1/chat/completions", json=body) for _ in range(50) for p in (one, two)]
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [200] * 100, [r.text for r in answers if r.status_code != 200][:3]
    assert oauth.refresh_count() == 1 and oauth.reused_count == 0
    sent = [r.form["refresh_token"] for r in oauth.refresh_requests()]
    assert len(sent) == len(set(sent)) == 1  # the refresh token went out exactly once
    new_access, _ = file_tokens(path)
    assert expired not in tokens_sent(backend) and set(tokens_sent(backend)) == {new_access}


def test_account_files_are_picked_up_removed_and_replaced_while_running(tmp_path, oauth, proxies, backend):
    (tmp_path / "auth").mkdir(mode=0o700)
    proxy = proxies(oauth.url)
    with pytest.raises(openai.APIStatusError) as e:
        chat(proxy)
    assert e.value.status_code == 503 and "cliproxy login" in e.value.message

    mark = len(proxy.lines)
    path = oauth.make_account(tmp_path / "auth", email="a@example.com", account_id="acct-first", name="work.json")
    proxy.wait_log("1 account(s) in the pool", start=mark)
    chat(proxy)
    assert backend.received[-1].headers["chatgpt-account-id"] == "acct-first"

    mark = len(proxy.lines)
    tmp = tmp_path / "new.json"  # replaced as `cliproxy login` does it: written beside, renamed over
    oauth.make_account(tmp_path, email="b@example.com", account_id="acct-second", name="new.json")
    tmp.replace(path)
    proxy.wait_log("1 account(s) in the pool", start=mark)
    chat(proxy)
    assert backend.received[-1].headers["chatgpt-account-id"] == "acct-second"

    mark = len(proxy.lines)
    path.unlink()
    proxy.wait_log("0 account(s) in the pool", start=mark)
    with pytest.raises(openai.APIStatusError) as e:
        chat(proxy)
    assert e.value.status_code == 503


def test_dead_login_serves_until_its_token_runs_out_then_a_new_login_takes_over(tmp_path, oauth, proxies, backend):
    path = oauth.make_account(tmp_path / "auth", email="a@example.com", expires_in=120, age=10 * DAY - 120, name="a.json")
    old_access, old_refresh = file_tokens(path)
    oauth.revoke(old_refresh)  # e.g. the password was changed: refreshing is over for this login
    proxy = proxies(oauth.url)
    chat(proxy)  # the refresh fails for good, but the current token still works for two minutes
    assert tokens_sent(backend) == [old_access] and json.loads(path.read_text())["cliproxy_status"]["state"] == "needs-login"
    chat(proxy, "again")
    assert len(oauth.refresh_requests()) == 1  # a dead login is not retried
    assert proxy.log.count("using its current token until it expires") == 1

    backend.responder = lambda req: unauthorized() if req.headers["authorization"] == f"Bearer {old_access}" else default_responder(req)
    with pytest.raises(openai.AuthenticationError) as e:
        chat(proxy, "refused now")
    assert "cliproxy login" in e.value.message

    mark = len(proxy.lines)
    tmp = oauth.make_account(tmp_path, email="a@example.com", name="relogin.json")  # `cliproxy login` again
    tmp.replace(path)
    proxy.wait_log("account(s) in the pool", start=mark)
    # The reload logged may still be the one for the proxy's own status write before the new login: the
    # watcher polls every second, so give the new file up to a few polls to be taken up.
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = chat(proxy, "back")
            break
        except openai.InternalServerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert answer.choices[0].message.content == "You said: back"
    assert tokens_sent(backend)[-1] == file_tokens(path)[0] != old_access
