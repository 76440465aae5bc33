"""The addon classes in-process, with mitmproxy's test helpers (taddons, tflow)."""

import json

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from cliproxy.addons.core import config as configfile
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.client_access import ClientAccess
from cliproxy.addons.hooks.client_api import ClientApis
from cliproxy.addons.hooks.codex_upstream import CodexUpstream
from cliproxy.addons.hooks.guard import Guard
from cliproxy.addons.hooks.router import Router
from cliproxy.addons.mitm.flowstate import state
from tests.conftest import mint_account
from tests.fakes.codex_backend import turn
from tests.unit.hooks import run_hooks
from tests.unit.test_chat_translate import wire


@pytest.fixture
def runtime(tmp_path):
    mint_account(tmp_path / "auth")
    rt = Runtime()
    rt.apply_config(configfile.parse({"auth-dir": str(tmp_path / "auth"), "codex-base-url": "http://127.0.0.1:9/backend-api/codex"}))
    return rt


def chat_flow(body, host="api.openai.com", path="/v1/chat/completions"):
    f = tflow.tflow(
        req=tutils.treq(
            method=b"POST",
            host=host,
            port=443,
            scheme=b"https",
            path=path.encode(),
            headers=http.Headers(host=host, content_type="application/json", authorization="Bearer sk-user"),
            content=json.dumps(body).encode(),
        )
    )
    f.client_conn.peername = ("127.0.0.1", 5555)
    return f


async def run_request(runtime, f, extra=()):
    return await run_hooks([Router(runtime), ClientApis(runtime), CodexUpstream(runtime), *extra, Guard()], f)


async def test_chat_request_is_rewritten_onto_codex(runtime):
    f = await run_request(runtime, chat_flow({"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    assert f.response is None  # a stream is forwarded by mitmproxy and translated as it comes
    assert f.request.url == "http://127.0.0.1:9/backend-api/codex/responses"
    assert f.request.headers["host"] == "127.0.0.1:9"
    assert f.request.headers["authorization"] != "Bearer sk-user"
    assert f.request.headers["chatgpt-account-id"] == "acct-0000-test"
    assert json.loads(f.request.content)["store"] is False
    assert state(f)["upstream"] and state(f)["account"] == "dev@example.com"


async def test_models_answered_locally_in_both_shapes(runtime):
    f = await run_request(runtime, tflow.tflow(req=tutils.treq(method=b"GET", host="api.openai.com", path=b"/v1/models")))
    assert f.response.status_code == 200 and f.response.json()["object"] == "list"
    g = tflow.tflow(
        req=tutils.treq(
            method=b"GET",
            host="api.anthropic.com",
            path=b"/v1/models",
            headers=http.Headers(host="api.anthropic.com", anthropic_version="2023-06-01"),
        )
    )
    g = await run_request(runtime, g)
    assert g.response.json()["data"][0]["type"] == "model"


async def test_other_hosts_are_left_alone(runtime):
    f = await run_request(runtime, chat_flow({"x": 1}, host="example.com"))
    assert f.response is None and state(f) is None and f.request.host == "example.com"


async def test_an_exception_in_a_hook_answers_500_and_never_forwards(runtime, monkeypatch):
    from cliproxy.addons.translate import chat

    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(chat, "request_to_codex", boom)
    f = await run_request(runtime, chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
    assert f.response.status_code == 500
    assert f.response.json()["error"]["code"] == "internal_error"
    assert f.request.host == "api.openai.com"  # never rewritten, and answered locally


async def test_guard_refuses_claimed_flows_nobody_handled(runtime, monkeypatch):
    monkeypatch.setattr(ClientApis, "request", lambda self, flow: None)  # a handler that forgets the flow
    f = await run_request(runtime, chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
    assert f.response.status_code == 500 and f.response.json()["error"]["code"] == "internal_error"
    assert f.request.host == "api.openai.com"


async def test_no_account_is_503_in_client_format(tmp_path):
    rt = Runtime()
    rt.apply_config(configfile.parse({"auth-dir": str(tmp_path / "empty")}))
    f = await run_request(rt, chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
    assert f.response.status_code == 503
    assert "cliproxy login" in f.response.json()["error"]["message"]


async def test_non_loopback_peer_needs_a_client_key(runtime):
    chain = lambda: [ClientAccess(runtime), Router(runtime), ClientApis(runtime), CodexUpstream(runtime), Guard()]  # noqa: E731
    f = chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})
    f.client_conn.peername = ("192.0.2.7", 5555)
    f = await run_hooks(chain(), f)
    assert f.response.status_code == 407 and "api-keys" in f.response.json()["error"]["message"]
    runtime.config = configfile.parse(
        {"api-keys": ["sk-user"], "auth-dir": str(runtime.config.auth_dir), "codex-base-url": runtime.config.codex_base_url}
    )
    g = chat_flow({"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    g.client_conn.peername = ("192.0.2.7", 5555)
    g.request.headers["proxy-authorization"] = "Bearer sk-user"
    g = await run_hooks(chain(), g)
    assert g.response is None and state(g)["upstream"] and "proxy-authorization" not in g.request.headers


async def test_stream_callable_translates_and_never_returns_empty_bytes(runtime):
    f = await run_request(runtime, chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "stream": True}))
    f.response = tutils.tresp(status_code=200, headers=http.Headers(content_type="text/event-stream", content_length="10"), content=b"")
    up = CodexUpstream(runtime)
    with taddons.context(up):
        up.responseheaders(f)
        assert "content-length" not in f.response.headers
        assert f.response.headers["transfer-encoding"] == "chunked"
        cb = f.response.stream
        data = wire(turn().text("Hi there").events())
        outs = [cb(data[i : i + 5]) for i in range(0, len(data), 5)] + [cb(b"")]
    assert all(isinstance(o, list) and b"" not in o for o in outs)
    body = b"".join(b"".join(o) for o in outs)
    assert body.endswith(b"data: [DONE]\n\n") and b"Hi there"[:2] in body


async def test_upstream_error_is_mapped_in_response(runtime):
    f = await run_request(runtime, chat_flow({"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    f.response = tutils.tresp(
        status_code=400, headers=http.Headers(content_type="application/json"), content=b'{"detail":"Unsupported parameter: foo"}'
    )
    up = CodexUpstream(runtime)
    with taddons.context(up):
        up.responseheaders(f)
        await up.response(f)
    assert f.response.status_code == 400
    assert f.response.json()["error"]["message"] == "Unsupported parameter: foo"


def test_listener_passes_through_tls_to_other_hosts():
    from mitmproxy import ctx
    from mitmproxy.proxy import context
    from mitmproxy.tls import ClientHelloData

    from cliproxy.addons.hooks.listener import Listener

    listener = Listener()
    with taddons.context(listener):
        for sni, ignored in (("example.com", True), ("api.openai.com", False), ("chatgpt.com", False)):
            hello = type("Hello", (), {"sni": sni})()
            data = ClientHelloData(context.Context(tflow.tclient_conn(), ctx.options), hello)
            listener.tls_clienthello(data)
            assert data.ignore_connection is ignored, sni


async def test_oversized_bodies_are_413_in_client_format(runtime):
    runtime.config = configfile.parse({"auth-dir": str(runtime.config.auth_dir), "max-request-bytes": 100})
    f = chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "x" * 200}]})
    f = await run_request(runtime, f)
    assert f.response.status_code == 413 and f.response.json()["error"]["code"] == "request_too_large"
    g = chat_flow({"model": "gpt-5.5", "messages": [{"role": "user", "content": "x" * 200}]}, path="/v1/messages")
    g = await run_request(runtime, g)
    assert g.response.status_code == 413 and g.response.json()["error"]["type"] == "request_too_large"


async def test_deadline_gives_up_on_silent_upstreams_only(runtime, monkeypatch):
    from cliproxy.addons.hooks import deadline
    from cliproxy.addons.translate.registry import stream_translator

    abandoned = []
    monkeypatch.setattr(deadline, "abandon_upstream", lambda flow: abandoned.append(flow.id) or True)
    d = deadline.UpstreamDeadline(runtime)
    limit = runtime.config.request_timeout
    waiting = await run_request(runtime, chat_flow({"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    streaming = await run_request(runtime, chat_flow({"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    with taddons.context(d):
        d.request(waiting)
        d.request(streaming)
        t0 = deadline.time.monotonic()
        streaming.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
        streaming.response.stream = translator = stream_translator("chat", "gpt-5.5", {})
        d.check(t0 + limit / 2)
        assert abandoned == []  # nobody silent long enough yet
        translator(wire(turn().text("partial").events())[:200])
        translator.last_input_at = t0 + limit  # the stream's bytes keep coming
        d.check(t0 + limit + 1)
        assert abandoned == [waiting.id] and state(waiting)["timed_out"] == limit  # no answer yet: given up
        d.check(t0 + 2 * limit + 1)
        assert abandoned == [waiting.id, streaming.id] and "went silent" in translator.collector.error.message
        d.response(streaming)
        d.check(t0 + 10 * limit)
        assert len(abandoned) == 2  # each flow is given up once


def test_listeners_default_to_loopback():
    from cliproxy.addons.hooks.listener import Listener
    from cliproxy.addons.mitm.modes import loopback_spec

    assert loopback_spec("regular", None) == "regular@127.0.0.1:8080"
    assert loopback_spec("regular@8081", None) == "regular@127.0.0.1:8081"
    assert loopback_spec("socks5@0.0.0.0:1080", None) == "socks5@0.0.0.0:1080"  # an explicit host is kept
    from mitmproxy.addons.proxyserver import Proxyserver

    listener = Listener()
    with taddons.context(Proxyserver(), listener) as tctx:  # Proxyserver declares mode, listen_host, ...
        tctx.options.update(mode=["regular"], listen_host="")
        listener.running()
        assert tctx.options.mode == ["regular@127.0.0.1:8080", "reverse:http://cliproxy.invalid@127.0.0.1:8317"]
        assert tctx.options.connection_strategy == "lazy"
        tctx.options.update(mode=["regular"], listen_host="0.0.0.0")  # the user asked for every interface
        assert tctx.options.mode == ["regular", "reverse:http://cliproxy.invalid@127.0.0.1:8317"]
