"""HTTP conventions through the real proxy: x-request-id on every answer, OPTIONS preflights, CORS for
the origins in `cors-origins` (and none for others, nor by default)."""

import json
import ssl

import httpx
import pytest

from tests.conftest import mint_account
from tests.fakes.codex_backend import JSONReply, sse, turn
from tests.proxyproc import start_proxy

ORIGIN = "http://localhost:3000"
CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
PREFLIGHT = {
    "origin": ORIGIN,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-stainless-lang",
}


@pytest.fixture(scope="module")
def cors_proxy(tmp_path_factory, backend_server):
    home = tmp_path_factory.mktemp("cors")
    mint_account(home / "auth")
    p = start_proxy(
        home,
        {
            "auth-dir": str(home / "auth"),
            "codex-base-url": backend_server.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
            "cors-origins": [ORIGIN],
        },
    )
    yield p
    p.stop()


def client(proxy, mode):
    if mode == "base_url":
        return httpx.Client(base_url=proxy.base_url, timeout=30)
    return httpx.Client(
        base_url="https://api.openai.com", proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/models"])
def test_preflight_from_a_listed_origin(cors_proxy, mode, backend, path):
    with client(cors_proxy, mode) as c:
        r = c.options(path, headers=PREFLIGHT)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert r.headers["access-control-allow-headers"] == PREFLIGHT["access-control-request-headers"]
    assert r.headers["access-control-max-age"] == "7200"
    assert r.headers["x-request-id"].startswith("req_")
    assert not backend.received


@pytest.mark.parametrize("origin", ["http://evil.example", None])
def test_preflight_from_another_origin_gets_no_cors(cors_proxy, mode, backend, origin):
    headers = {**PREFLIGHT, "origin": origin} if origin else {}
    with client(cors_proxy, mode) as c:
        r = c.options("/v1/chat/completions", headers=headers)
    assert r.status_code == 204 and r.headers["allow"] == "GET, POST, OPTIONS"
    assert not any(k.startswith("access-control-") for k in r.headers)


def test_answers_to_a_listed_origin_carry_allow_origin(cors_proxy, mode, backend):
    with client(cors_proxy, mode) as c:
        ok = c.post("/v1/chat/completions", json=CHAT, headers={"origin": ORIGIN})
        streamed = c.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"origin": ORIGIN})
        refused = c.post("/v1/chat/completions", json={**CHAT, "n": 2}, headers={"origin": ORIGIN})
        other = c.post("/v1/chat/completions", json=CHAT, headers={"origin": "http://evil.example"})
    for r in (ok, streamed, refused):
        assert r.headers["access-control-allow-origin"] == ORIGIN and "x-request-id" in r.headers["access-control-expose-headers"]
    assert ok.status_code == 200 and streamed.status_code == 200 and refused.status_code == 400
    assert "access-control-allow-origin" not in other.headers and other.status_code == 403
    assert other.json()["error"]["code"] == "origin_not_allowed"


def test_no_cors_by_default(proxy, mode, backend):
    with client(proxy, mode) as c:
        pre = c.options("/v1/chat/completions", headers=PREFLIGHT)
        r = c.post("/v1/chat/completions", json=CHAT, headers={"origin": ORIGIN})
    assert pre.status_code == 204 and not any(k.startswith("access-control-") for k in pre.headers)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert not backend.received


# -- web pages: a "simple" request (no preflight) from an unlisted origin is refused before it runs


SIMPLE = json.dumps(CHAT).encode()  # what a page can POST as text/plain without a preflight
PAGE = {"content-type": "text/plain;charset=UTF-8", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "empty"}


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        {"origin": "https://evil.example"},
        {"origin": "null", "sec-fetch-site": "cross-site"},  # a sandboxed frame or a file:// page
        {"origin": "http://127.0.0.1:8317", "sec-fetch-site": "same-origin"},  # a DNS-rebinding page: its own origin
        {"sec-fetch-site": "cross-site"},  # no Origin (a navigation), still another site
        {"sec-fetch-site": "same-site"},
    ],
    ids=["cross-site", "origin-only", "null", "rebinding", "fetch-site-only", "same-site"],
)
def test_a_web_page_cannot_spend_the_pool(proxy, mode, backend, headers):
    with client(proxy, mode) as c:
        r = c.post("/v1/chat/completions", content=SIMPLE, headers={**PAGE, **headers})
        m = c.post("/v1/messages", content=json.dumps(MESSAGES).encode(), headers={**PAGE, **headers, "anthropic-version": "2023-06-01"})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "origin_not_allowed" and err["type"] == "permission_error" and "cors-origins" in err["message"]
    assert "access-control-allow-origin" not in r.headers
    assert m.status_code == 403 and m.json()["type"] == "error" and m.json()["error"]["type"] == "permission_error", m.text
    assert backend.received == []


def test_a_web_page_cannot_open_a_responses_websocket(proxy, backend):
    """A browser opens WebSockets to any origin without CORS (and could read the frames): the handshake is refused."""
    upgrade = {
        "connection": "Upgrade",
        "upgrade": "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    with httpx.Client(base_url=proxy.base_url, timeout=30) as c:
        r = c.get("/v1/responses", headers={**upgrade, "origin": "https://evil.example", "sec-fetch-site": "cross-site"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed", r.text
    assert backend.received == []


@pytest.mark.parametrize(
    "headers", [{}, {"sec-fetch-site": "none"}, {"sec-fetch-site": "same-origin"}], ids=["tool", "typed-url", "same-origin"]
)
def test_requests_without_a_web_origin_are_served(proxy, mode, backend, headers):
    """SDKs and CLIs send no Origin; the same text/plain body is served."""
    with client(proxy, mode) as c:
        r = c.post("/v1/chat/completions", content=SIMPLE, headers={"content-type": "text/plain", **headers})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], r.text
    assert len(backend.received) == 1


def test_a_listed_origin_is_served_as_a_simple_request(cors_proxy, mode, backend):
    with client(cors_proxy, mode) as c:
        r = c.post("/v1/chat/completions", content=SIMPLE, headers={**PAGE, "origin": ORIGIN, "sec-fetch-site": "cross-site"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN, r.text
    assert len(backend.received) == 1


def test_an_intercepted_sites_own_pages_are_not_refused(proxy, backend):
    """Through HTTPS_PROXY, a page of the intercepted site itself is same-origin: not another site's page."""
    with client(proxy, "https_proxy") as c:
        r = c.post("/v1/chat/completions", json=CHAT, headers={"origin": "https://api.openai.com", "sec-fetch-site": "same-origin"})
        other = c.post("/v1/chat/completions", json=CHAT, headers={"origin": "https://platform.openai.com", "sec-fetch-site": "same-site"})
    assert r.status_code == 200, r.text
    assert other.status_code == 403 and other.json()["error"]["code"] == "origin_not_allowed"
    assert len(backend.received) == 1


def test_x_request_id_on_every_answer(raw, backend):
    answers = {
        "models": raw.get("/v1/models"),
        "not found": raw.get("/v1/embeddings"),
        "method": raw.get("/v1/chat/completions"),
        "bad json": raw.post("/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}),
        "count_tokens": raw.post(
            "/v1/messages/count_tokens", json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
        ),
        "head": raw.head("/v1/models"),
    }
    ids = {name: r.headers.get("x-request-id", "") for name, r in answers.items()}
    assert all(i.startswith("req_") for i in ids.values()), ids
    assert len(set(ids.values())) == len(ids)  # one per answer
    translated = raw.post("/v1/chat/completions", json=CHAT)
    assert translated.headers["x-request-id"] == "req_fake"  # the backend's own, passed on (stream answers: test_client_limits)
    backend.replies.append(JSONReply(400, {"detail": "Unsupported parameter: foo"}))  # an upstream error without an id
    refused = raw.post("/v1/chat/completions", json=CHAT)
    assert (
        refused.status_code == 400
        and refused.json()["error"]["param"] == "foo"
        and refused.json()["error"]["code"] == "unsupported_parameter"
    )
    assert refused.headers["x-request-id"].startswith("req_") and refused.headers["x-request-id"] not in ids.values()


def test_chat_completion_ids(raw, backend):
    backend.replies.append(sse(turn(response_id="resp_fake0001").text("hi").events()))
    r = raw.post("/v1/chat/completions", json=CHAT).json()
    assert r["id"] == "chatcmpl-fake0001"  # made from the upstream response id
