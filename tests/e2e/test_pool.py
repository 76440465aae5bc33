"""Account pool and resilience through the real proxy: cool-downs, failover, stickiness, quota, API keys."""

import json
import time

import httpx
import openai
import pytest

from tests.conftest import mint_account
from tests.fakes.codex_backend import JSONReply, default_responder, sse, turn, usage_limit
from tests.proxyproc import start_proxy

A, B = "acct-A", "acct-B"


@pytest.fixture
def two_accounts(tmp_path, backend_server, backend):
    auth = tmp_path / "auth"
    mint_account(auth, "a@example.com", A)
    mint_account(auth, "b@example.com", B)
    config = {"auth-dir": str(auth), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"}

    def start(**extra):
        p = start_proxy(tmp_path / "p", {**config, **extra})
        started.append(p)
        return p

    started = []
    yield start
    for p in started:
        p.stop()


def accounts_used(backend):
    return [r.headers.get("chatgpt-account-id") for r in backend.received]


def client(proxy):
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="x", max_retries=0)


def ask(proxy, model="gpt-5.5", text="hi", **kw):
    return client(proxy).chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def test_usage_limit_fails_over_and_cools_until_reset(two_accounts, backend):
    proxy = two_accounts(routing={"strategy": "fill-first"})  # always A first while A is available
    limited = {"until": time.time() + 2}
    backend.responder = lambda req: (
        usage_limit(resets_in=2) if req.headers["chatgpt-account-id"] == A and time.time() < limited["until"] else default_responder(req)
    )
    assert ask(proxy).choices[0].message.content == "You said: hi"
    assert accounts_used(backend) == [A, B]  # A refused, B served it transparently
    ask(proxy, text="second conversation")
    assert accounts_used(backend)[-1] == B  # A is skipped while it cools down
    time.sleep(2.2)
    ask(proxy, text="third conversation")
    assert accounts_used(backend)[-1] == A  # and used again after the reset, without a restart
    time.sleep(2.3)  # quota state is written at most every 2 s per account
    state = json.loads(next((proxy.config_path.parent.parent / "auth" / ".cliproxy-state").glob("*a@example.com*")).read_text())
    assert state["quota"]["primary"]["used_percent"] == 12.5


def test_all_accounts_cooling_is_429_with_retry_after(two_accounts, backend):
    proxy = two_accounts()
    backend.responder = lambda req: usage_limit(resets_in=120)
    with pytest.raises(openai.RateLimitError) as e:
        ask(proxy)
    assert sorted(accounts_used(backend)) == [A, B]
    assert int(e.value.response.headers["retry-after"]) in range(115, 121)
    assert "gpt-5.5" in e.value.message and "cooling down" in e.value.message
    with pytest.raises(openai.RateLimitError) as e:  # answered locally now, no upstream call
        ask(proxy, stream=True)
    assert len(backend.received) == 2 and e.value.body["code"] == "model_cooldown"


def test_server_error_fails_over_and_streams_the_retried_answer(two_accounts, backend):
    proxy = two_accounts(routing={"strategy": "fill-first"})
    backend.responder = lambda req: (
        JSONReply(502, {"error": {"message": "bad gateway"}})
        if req.headers["chatgpt-account-id"] == A
        else sse(turn().text("from B").events())
    )
    chunks = list(ask(proxy, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from B"
    assert accounts_used(backend) == [A, B]


def test_request_faults_do_not_fail_over(two_accounts, backend):
    proxy = two_accounts()
    backend.responder = lambda req: JSONReply(400, {"detail": "Unsupported parameter: foo"})
    with pytest.raises(openai.BadRequestError):
        ask(proxy)
    assert len(backend.received) == 1


def test_sticky_sessions_keep_a_conversation_on_one_account(two_accounts, backend):
    proxy = two_accounts()
    c = client(proxy)
    for _ in range(4):
        c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], extra_body={"prompt_cache_key": "conv-1"})
    assert len(set(accounts_used(backend))) == 1
    for n in range(4):  # different conversations are spread round-robin
        c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"other {n}"}])
    assert set(accounts_used(backend)[4:]) == {A, B}


def test_client_disconnect_closes_the_upstream(two_accounts, backend):
    proxy = two_accounts()
    backend.replies.append(sse(turn().text("x" * 400).events(), delay=0.05, chunking="frames"))
    before = backend.disconnects
    with httpx.Client(base_url=proxy.base_url) as h:
        with h.stream(
            "POST", "/v1/chat/completions", json={"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        ) as r:
            next(r.iter_raw())
    deadline = time.time() + 5
    while backend.disconnects == before and time.time() < deadline:
        time.sleep(0.05)
    assert backend.disconnects > before


def test_api_key_upstream_is_a_pool_member(tmp_path, backend_server, backend):
    config = {
        "auth-dir": str(tmp_path / "empty"),
        "codex-base-url": backend_server.base_url,
        "codex-api-key": [
            {
                "api-key": "sk-upstream-123",
                "base-url": backend_server.base_url,
                "models": [{"name": "gpt-5.5", "alias": "my-model"}],
                "headers": {"x-extra": "1"},
            }
        ],
    }
    proxy = start_proxy(tmp_path / "p", config)
    try:
        r = ask(proxy, model="my-model")
        assert r.choices[0].message.content == "You said: hi"
        got = backend.received[-1]
        assert got.headers["authorization"] == "Bearer sk-upstream-123" and got.headers["x-extra"] == "1"
        assert "chatgpt-account-id" not in got.headers and got.json["model"] == "gpt-5.5"
        assert "sk-upstream-123" not in proxy.log
        ids = [m.id for m in client(proxy).models.list()]
        assert "my-model" in ids
    finally:
        proxy.stop()


@pytest.mark.parametrize("crlf", [False, True])
def test_upstream_cut_mid_stream_ends_with_an_error_frame(proxy, backend, crlf):
    backend.replies.append(sse(turn().text("partial answer here").events(), cut_after=8, chunking="awkward", crlf=crlf))
    stream = client(proxy).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}], stream=True)
    text = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "partial answer here"
    assert "stream closed before response.completed" in e.value.message
    # the connection stays usable: the next request on a fresh client works as usual
    assert ask(proxy).choices[0].message.content == "You said: hi"


def test_unreachable_backend_is_a_client_format_error_not_html(tmp_path, proxy_home):
    from tests.proxyproc import free_port

    proxy = start_proxy(
        tmp_path / "p", {"auth-dir": str(proxy_home / "auth"), "codex-base-url": f"http://127.0.0.1:{free_port()}/backend-api/codex"}
    )
    try:
        with pytest.raises(openai.APIStatusError) as e:
            ask(proxy)
        assert e.value.status_code == 502 and "cannot reach the upstream" in e.value.message
        r = httpx.post(
            proxy.base_url + "/v1/messages", json={"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        )
        if r.status_code != 500:  # once /v1/messages exists it must fail the same clean way, in Anthropic's shape
            assert r.status_code == 502 and r.json()["type"] == "error"
    finally:
        proxy.stop()


def test_silent_upstream_is_given_up_after_the_timeout_and_failed_over(two_accounts, backend):
    proxy = two_accounts(routing={"strategy": "fill-first"}, **{"request-timeout-seconds": 2})
    backend.replies.append(sse(turn().text("too late").events(), stall=8))  # A: headers never come in time
    started = time.monotonic()
    assert ask(proxy).choices[0].message.content == "You said: hi"
    assert 2 <= time.monotonic() - started < 6 and accounts_used(backend) == [A, B]
    proxy.wait_log("went silent for 2s before answering")

    backend.replies.append(sse(turn().text("too late").events(), stall=8))  # B too, while A rests
    with pytest.raises(openai.APIStatusError) as e:
        ask(proxy, text="again")
    assert e.value.status_code == 504 and "went silent for 2s before answering" in e.value.message


def test_upstream_silent_mid_stream_ends_with_an_error_frame(two_accounts, backend):
    proxy = two_accounts(**{"request-timeout-seconds": 2})
    backend.replies.append(sse(turn().text("first words, then nothing").events(), chunking="frames", delay=10))
    stream = client(proxy).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}], stream=True)
    started = time.monotonic()
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "went silent for 2s mid-answer" in e.value.message and time.monotonic() - started < 8
    assert ask(proxy).choices[0].message.content == "You said: hi"  # and the proxy carries on
