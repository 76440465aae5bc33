"""Every upstream fault, on every translated route, stream or not, ends in the client's own format
within the deadline (issue 10's fault matrix), through the real proxy.

The first upstream attempt of each request gets the fault; the pool then behaves as it should: a
failover to another account where nothing has reached the client yet, a terminal error event in
the client's format where the stream has begun, a 502 in the client's format where no account can
do better (a 200 that is not an event stream).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fakes.codex_backend import JSONReply, RawReply, chunked, sse, sse_head, turn, unauthorized, usage_limit
from tests.fakes.oauth_server import FakeOAuthServer
from tests.proxyproc import start_proxy

TIMEOUT = 2  # request-timeout-seconds of the proxy under test
FIRST_FRAMES = b"".join(
    f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode() for kind, payload in turn().text("partial answer").events()[:4]
)

FAULTS = {
    "5xx": JSONReply(503, {"error": {"message": "The server is overloaded.", "type": "server_error", "code": "server_is_overloaded"}}),
    "reset_before_headers": RawReply(b""),
    "half_event_then_close": RawReply(
        sse_head() + chunked(FIRST_FRAMES + b'event: response.output_text.delta\ndata: {"type":"response.out')
    ),
    "garbage_data": RawReply(sse_head() + chunked(b"data: {not json\n\ndata: \xff\xfe\n\n: comment\n\n") + b"0\r\n\r\n"),
    "stall_after_events": sse(turn().text("never finished").events(), pause_after=(4, 3 * TIMEOUT)),
    "usage_limit_429": usage_limit(resets_in=120),
    "unauthorized_401": unauthorized(),
    "200_not_sse": JSONReply(200, {"ok": True}),
}
# What a stream client sees when the fault comes after the stream began (no failover possible then).
BROKEN_MID_STREAM = {"half_event_then_close", "garbage_data", "stall_after_events"}
ROUTES = {
    "chat": (
        "/v1/chat/completions",
        lambda text, stream: {"model": "gpt-5.5", "stream": stream, "messages": [{"role": "user", "content": text}]},
    ),
    "responses": ("/v1/responses", lambda text, stream: {"model": "gpt-5.5", "stream": stream, "input": text}),
    "messages": (
        "/v1/messages",
        lambda text, stream: {
            "model": "claude-sonnet-4-5",
            "stream": stream,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}],
        },
    ),
}


@pytest.fixture(scope="module")
def oauth():
    with FakeOAuthServer(access_ttl=10 * 24 * 3600) as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, oauth, backend_server):
    """Nine accounts, so that a fault that rests one never leaves the pool empty for the next case."""
    home = tmp_path_factory.mktemp("faults")
    for n in range(9):
        oauth.make_account(home / "auth", email=f"user{n}@example.com")
    p = start_proxy(
        home,
        {
            "auth-dir": str(home / "auth"),
            "codex-base-url": backend_server.base_url,
            "oauth-issuer": oauth.url,
            "request-timeout-seconds": TIMEOUT,
            "routing": {"strategy": "fill-first"},
        },
    )
    yield p
    p.stop()


def expect_answer(route: str, stream: bool, r: httpx.Response, text: str) -> None:
    assert r.status_code == 200, r.text[:300]
    if not stream:
        body = r.json()
        got = {
            "chat": lambda: body["choices"][0]["message"]["content"],
            "responses": lambda: body["output"][-1]["content"][0]["text"],
            "messages": lambda: body["content"][-1]["text"],
        }[route]()
        assert got == f"You said: {text}"
        return
    events = r.text
    assert f"You said: {text}"[:6] in events
    assert {"chat": "data: [DONE]", "responses": "event: response.completed", "messages": "event: message_stop"}[route] in events


def expect_stream_error(route: str, r: httpx.Response) -> None:
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f.strip()]
    last = frames[-1] if route != "chat" else next(f for f in reversed(frames) if f != "data: [DONE]")
    data = json.loads(last.split("data: ", 1)[1])
    if route == "chat":
        assert isinstance(data["error"]["message"], str) and data["error"]["type"]
    elif route == "responses":
        assert last.startswith("event: error") and data["type"] == "error" and data["message"]
    else:
        assert (
            last.startswith("event: error")
            and data["type"] == "error"
            and data["error"]["type"] in ("api_error", "timeout_error", "overloaded_error")
        )


def expect_error(route: str, r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text[:300]
    body = r.json()
    if route == "messages":
        assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"]
    else:
        assert body["error"]["type"] and body["error"]["message"] and body["error"]["code"], body


@pytest.mark.e2e
@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_ends_in_the_clients_format_within_the_deadline(proxy, backend, fault, route, stream):
    path, body = ROUTES[route]
    text = f"{fault} {route} {stream}"
    backend.replies.append(FAULTS[fault])
    started = time.monotonic()
    headers = {"anthropic-version": "2023-06-01"} if route == "messages" else {}
    r = httpx.post(proxy.base_url + path, json=body(text, stream), headers=headers, timeout=30)
    took = time.monotonic() - started
    if fault == "200_not_sse":
        expect_error(route, r, 502)
    elif stream and fault in BROKEN_MID_STREAM:
        expect_stream_error(route, r)
    else:
        expect_answer(route, stream, r, text)
    assert took < 2 * TIMEOUT + 3, f"took {took:.1f}s"
    assert "Traceback" not in proxy.log


@pytest.mark.e2e
def test_a_200_that_is_not_an_event_stream_rests_nobody(proxy, backend):
    backend.replies.append(JSONReply(200, "<html>edge</html>", {"content-type": "text/html"}))
    r = httpx.post(proxy.base_url + "/v1/chat/completions", json=ROUTES["chat"][1]("html", False), timeout=30)
    expect_error("chat", r, 502)
    assert "text/html instead of an event stream" in r.json()["error"]["message"]
    first = backend.received[-1].headers["chatgpt-account-id"]
    r = httpx.post(proxy.base_url + "/v1/chat/completions", json=ROUTES["chat"][1]("after", False), timeout=30)
    expect_answer("chat", False, r, "after")
    assert backend.received[-1].headers["chatgpt-account-id"] == first  # the same account serves again at once
