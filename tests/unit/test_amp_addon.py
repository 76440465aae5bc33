"""The Amp addons in-process (taddons/tflow): the localhost rule by TCP peer, flow notes, upstream failures."""

import json

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from cliproxy.addons.core import config as configfile
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.amp import Amp, AmpAnswers
from cliproxy.addons.hooks.client_api import ClientApis
from cliproxy.addons.hooks.codex_upstream import CodexUpstream
from cliproxy.addons.hooks.guard import Guard
from cliproxy.addons.hooks.notes import FlowNotes
from cliproxy.addons.hooks.router import Router
from cliproxy.addons.mitm.flowstate import state
from cliproxy.addons.mitm.upstream_failures import FAILURE_HEADER
from tests.conftest import mint_account
from tests.unit.hooks import run_hooks

KEY = "sk-amp-client"


@pytest.fixture
def runtime(tmp_path):
    mint_account(tmp_path / "auth")
    rt = Runtime()

    def apply(**ampcode):
        rt.apply_config(
            configfile.parse(
                {
                    "auth-dir": str(tmp_path / "auth"),
                    "codex-base-url": "http://127.0.0.1:9/backend-api/codex",
                    "api-keys": [KEY],
                    "ampcode": {"upstream-url": "http://127.0.0.1:7/", "upstream-api-key": "sgamp_k", **ampcode},
                }
            )
        )

    apply()
    rt.reconfigure = apply
    return rt


def amp_flow(path: str, body=None, peer=("127.0.0.1", 5555), method=b"POST", headers=()):
    f = tflow.tflow(
        req=tutils.treq(
            method=method,
            host="ampcode.com",
            port=443,
            scheme=b"https",
            path=path.encode(),
            headers=http.Headers(
                [
                    (b"host", b"ampcode.com"),
                    (b"content-type", b"application/json"),
                    (b"authorization", f"Bearer {KEY}".encode()),
                    *[(k.encode(), v.encode()) for k, v in headers],
                ]
            ),
            content=json.dumps(body or {}).encode(),
        )
    )
    f.client_conn.peername = peer
    return f


async def run(runtime, f):
    return await run_hooks([Router(runtime), Amp(runtime), ClientApis(runtime), CodexUpstream(runtime), Guard()], f)


REMOTE = ("192.168.1.100", 40000)


async def test_management_restricted_to_localhost_by_tcp_peer(runtime):
    runtime.reconfigure(**{"restrict-management-to-localhost": True})
    f = await run(
        runtime,
        amp_flow(
            "/api/internal?getUserInfo",
            {"method": "getUserInfo"},
            peer=REMOTE,
            headers=[("x-forwarded-for", "127.0.0.1"), ("x-real-ip", "127.0.0.1")],
        ),
    )
    assert f.response.status_code == 403
    assert json.loads(f.response.content) == {"error": "Access denied: management routes restricted to localhost"}

    f = await run(runtime, amp_flow("/api/internal?getUserInfo", {"method": "getUserInfo"}, peer=("::1", 1, 0, 0)))
    assert f.response is None and state(f)["passthrough"] and f.request.url == "http://127.0.0.1:7/api/internal?getUserInfo"

    # provider aliases are not management routes: served locally for a remote client with a key
    f = await run(
        runtime,
        amp_flow(
            "/api/provider/openai/v1/chat/completions",
            {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            peer=REMOTE,
        ),
    )
    assert f.response is None and state(f)["upstream"] and state(f)["amp"] == "local"

    runtime.reconfigure(**{"restrict-management-to-localhost": False})  # hot reload: the next request sees it
    f = await run(runtime, amp_flow("/threads/T-1", method=b"GET", peer=REMOTE))
    assert f.response is None and state(f)["amp"] == "upstream"


async def test_remote_peer_without_key_is_refused_before_anything_else(runtime):
    from mitmproxy.proxy.mode_specs import ProxyMode

    from cliproxy.addons.hooks.client_access import ClientAccess
    from cliproxy.addons.mitm.modes import listen_spec

    def chain():
        return [ClientAccess(runtime), Router(runtime), Amp(runtime), ClientApis(runtime), CodexUpstream(runtime), Guard()]

    f = amp_flow("/api/internal", {"method": "getUserInfo"}, peer=REMOTE)  # regular proxy, no authorised tunnel
    f = await run_hooks(chain(), f)
    assert f.response.status_code == 407 and f.request.url.startswith("https://ampcode.com/")
    g = amp_flow("/api/internal", {"method": "getUserInfo"}, peer=REMOTE)  # base-URL listener, no API key
    g.client_conn.proxy_mode = ProxyMode.parse(listen_spec("0.0.0.0:8317"))
    g.request.headers.pop("authorization")
    g = await run_hooks(chain(), g)
    assert g.response.status_code == 401 and state(g)["route"] == "refused"


async def test_upstream_request_is_rewritten(runtime):
    f = await run(
        runtime, amp_flow("/api/threads/T-1?key=" + KEY + "&x=1", method=b"GET", headers=[("x-api-key", KEY), ("accept-encoding", "br")])
    )
    req = f.request
    assert req.url == "http://127.0.0.1:7/api/threads/T-1?x=1" and req.headers["host"] == "127.0.0.1:7"
    assert req.headers["authorization"] == "Bearer sgamp_k" and req.headers["x-api-key"] == "sgamp_k"
    assert req.headers["accept-encoding"] == "identity" and KEY not in str(req.headers)


async def test_flow_notes_say_which_way_it_went(runtime):
    mapped = await run(
        runtime, amp_flow("/api/provider/openai/v1/chat/completions", {"model": "claude-x", "messages": [{"role": "user", "content": "x"}]})
    )
    assert state(mapped)["amp"] == "upstream"  # not mapped yet
    runtime.reconfigure(**{"model-mappings": [{"from": "claude-x", "to": "gpt-5.5"}]})
    mapped = await run(
        runtime, amp_flow("/api/provider/openai/v1/chat/completions", {"model": "claude-x", "messages": [{"role": "user", "content": "x"}]})
    )
    assert state(mapped)["amp"] == "mapped" and state(mapped)["route"] == "chat" and state(mapped)["upstream"]
    assert json.loads(mapped.request.content)["model"] == "gpt-5.5"
    credits = await run(runtime, amp_flow("/api/provider/anthropic/v1/messages", {"model": "claude-y", "messages": []}))
    notes, answers = FlowNotes(), AmpAnswers()
    for f in (mapped, credits):
        f.response = tutils.tresp(status_code=500, content=b"{}", headers=http.Headers(content_type="application/json"))
        notes.response(f)
        answers.response(f)
    assert mapped.comment.startswith("amp: local gpt-5.5 (mapped from claude-x) · ") and " · chat · gpt-5.5" in mapped.comment
    assert credits.comment.startswith("amp: upstream (amp credits) claude-y")


async def test_unreachable_upstream_becomes_amp_json(runtime):
    f = await run(runtime, amp_flow("/api/internal?getUserInfo", {"method": "getUserInfo"}))
    # what cliproxy's upstream_failures patch hands the response hooks when the connect fails
    f.response = http.Response.make(502, b'{"error": {}}', {"content-type": "application/json", FAILURE_HEADER: "1"})
    with taddons.context(Amp(runtime)):
        Amp(runtime).response(f)
    assert f.response.status_code == 502
    assert json.loads(f.response.content) == {"error": "amp_upstream_proxy_error", "message": "Failed to reach Amp upstream"}


async def test_gemini_calls_go_upstream_and_honour_the_localhost_rule(runtime):
    path = "/api/provider/google/v1beta1/publishers/google/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
    f = await run(runtime, amp_flow(path, {"contents": []}))
    assert state(f)["amp"] == "upstream" and f.request.url == "http://127.0.0.1:7" + path
    runtime.reconfigure(**{"restrict-management-to-localhost": True})
    f = await run(runtime, amp_flow(path, {"contents": []}, peer=REMOTE))
    assert f.response.status_code == 403
