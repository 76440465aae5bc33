"""The usage endpoint through the hooks (chatgpt.com with pooling): which account it shows, and its errors."""

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from cliproxy.addons.core import config as configfile
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.codex_cli import CodexCliPooling
from cliproxy.addons.hooks.guard import Guard
from cliproxy.addons.hooks.router import Router
from tests.conftest import mint_account
from tests.unit.hooks import run_hooks


def runtime(auth_dir, pooling=True):
    rt = Runtime()
    rt.apply_config(configfile.parse({"auth-dir": str(auth_dir), "codex-cli-pooling": pooling}))
    return rt


async def ask(rt, **headers):
    f = tflow.tflow(
        req=tutils.treq(
            method=b"GET",
            host="chatgpt.com",
            port=443,
            scheme=b"https",
            path=b"/backend-api/wham/usage",
            headers=http.Headers(host="chatgpt.com", authorization="Bearer cli-own", **headers),
            content=b"",
        )
    )
    f.client_conn.peername = ("127.0.0.1", 5555)
    return await run_hooks([Router(rt), CodexCliPooling(rt), Guard()], f)


def quota(used):
    return {"primary": {"used_percent": used, "window_minutes": 300}}


async def test_pinned_account_else_the_pool(tmp_path):
    mint_account(tmp_path / "auth", email="a@example.com")
    mint_account(tmp_path / "auth", email="b@example.com", account_id="acct-b")
    rt = runtime(tmp_path / "auth")
    a, b = rt.pool.members
    a.quota, b.quota = quota(80), quota(20)
    rt.pool.succeeded(b, "gpt-5.5", session="thread-1")
    f = await ask(rt, session_id="thread-1")
    assert f.response.status_code == 200
    assert (f.response.json()["cliproxy_scope"], f.response.json()["rate_limit"]["primary_window"]["used_percent"]) == ("account", 20)
    f = await ask(rt, session_id="thread-unknown")
    assert (f.response.json()["cliproxy_scope"], f.response.json()["rate_limit"]["primary_window"]["used_percent"]) == ("pool", 50)
    rt.pool.park(a)  # a login that cannot serve is no part of the pool's capacity
    assert (await ask(rt)).response.json()["rate_limit"]["primary_window"]["used_percent"] == 20


@pytest.mark.parametrize("pooling,status", [(True, 503), (False, None)])
async def test_no_account_is_a_503_and_without_pooling_chatgpt_is_left_alone(tmp_path, pooling, status):
    f = await ask(runtime(tmp_path / "empty", pooling))
    if status is None:
        assert f.response is None and f.request.headers["authorization"] == "Bearer cli-own"  # forwarded as it is
    else:
        assert f.response.status_code == 503 and f.response.json()["error"]["code"] == "auth_unavailable"
