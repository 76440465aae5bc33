"""The live model catalog through a real mitmdump: two accounts on different plans (one without
gpt-6-astra), a fake backend whose list changes while the proxy runs, real SDK clients."""

import json
import ssl
import time

import anthropic
import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, anthropic_sdk
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import CodexBackend, model_entry
from tests.proxyproc import start_proxy

GO, PLUS = "acct-go", "acct-plus"


@pytest.fixture(scope="module")
def fake():
    with CodexBackend() as backend:
        backend.catalog.plans.update({GO: "go", PLUS: "plus"})
        yield backend


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("catalog")
    mint_account(home / "auth", "go@example.com", GO, plan="go", name="go.json")
    mint_account(home / "auth", "plus@example.com", PLUS, name="plus.json")
    return home


@pytest.fixture(scope="module")
def proxy(home, fake):
    p = start_proxy(
        home,
        {
            "auth-dir": str(home / "auth"),
            "codex-base-url": fake.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
            "models-refresh-seconds": 1,
            "codex-cli-pooling": True,
        },
    )
    p.wait_log("model catalog from the backend", timeout=20)
    yield p
    p.stop()


@pytest.fixture
def backend(fake):
    fake.replies.clear()
    fake.received.clear()
    return fake


@pytest.fixture
def oai(proxy, mode, monkeypatch):
    if mode == "base_url":
        return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    monkeypatch.setenv("HTTPS_PROXY", proxy.proxy_url)
    monkeypatch.setenv("SSL_CERT_FILE", proxy.ca)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return openai.OpenAI(api_key=CLIENT_KEY, max_retries=0)


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_a_model_that_appears_upstream_is_listed_after_the_refresh(oai, fake, proxy):
    ids = [m.id for m in oai.models.list()]
    assert ids[:2] == ["gpt-6.1-sol", "gpt-6-astra"] and "gpt-7-nova" not in ids and "codex-auto-review" not in ids
    fake.catalog.models.append(model_entry("gpt-7-nova", "GPT-7-Nova"))
    try:
        wait_for(lambda: "gpt-7-nova" in [m.id for m in oai.models.list()])  # no restart
        answer = oai.chat.completions.create(model="gpt-7-nova", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "You said: hi"
    finally:
        fake.catalog.models.pop()
    wait_for(lambda: "gpt-7-nova" not in [m.id for m in oai.models.list()])
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="gpt-7-nova", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"


def test_a_model_goes_only_to_accounts_that_list_it(oai, backend):
    for i in range(4):  # distinct conversations: none is pinned to an account
        oai.chat.completions.create(model="gpt-6-astra", messages=[{"role": "user", "content": f"astra {i}"}])
    assert [r.headers["chatgpt-account-id"] for r in backend.received] == [PLUS] * 4  # the go plan lacks it: never tried
    for i in range(4):
        oai.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"classic {i}"}])
    assert {r.headers["chatgpt-account-id"] for r in backend.received[4:]} == {GO, PLUS}


def test_unknown_model_is_a_404_naming_it_on_chat_and_responses(oai, backend):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    err = e.value.body
    assert err["code"] == "model_not_found" and err["param"] == "model" and err["type"] == "invalid_request_error"
    assert "'gpt-4o'" in err["message"] and "available: gpt-6.1-sol, gpt-6-astra" in err["message"]
    with pytest.raises(openai.NotFoundError) as e:
        oai.responses.create(model="gpt-5.4-mini", input="x", stream=True)
    assert "'gpt-5.4-mini' is not in cliproxy's catalog" in e.value.body["message"]
    assert backend.received == []


def test_unknown_model_is_an_anthropic_404(proxy, mode, monkeypatch, backend):
    client = anthropic_sdk(proxy, mode, monkeypatch)
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="gpt-5.3-codex-spark", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    assert "'gpt-5.3-codex-spark'" in e.value.body["error"]["message"] and "gpt-6.1-sol" in e.value.body["error"]["message"]
    assert backend.received == []


def test_codex_shaped_list_on_both_paths(proxy, fake):
    with httpx.Client(base_url=proxy.base_url, timeout=10) as c:
        r = c.get("/v1/models", params={"client_version": "0.169.0"})
        assert r.status_code == 200 and r.headers["etag"]
        models = r.json()["models"]
        assert [m["slug"] for m in models] == [m["slug"] for m in fake.catalog.models]  # hidden ones too
        assert models[0] == fake.catalog.models[0]  # the backend's entries as they are: levels, context, lite flag
        assert c.get("/v1/models", params={"client_version": "0.169.0"}, headers={"if-none-match": r.headers["etag"]}).status_code == 304
        old = c.get("/backend-api/codex/models", params={"client_version": "0.150.0"}).json()["models"]
        assert [m["slug"] for m in old] == ["gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.5", "codex-auto-review"]
        openai_shape = c.get("/v1/models").json()
        assert openai_shape["object"] == "list" and openai_shape["data"][0]["id"] == "gpt-6.1-sol"
        anthropic_shape = c.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
        assert anthropic_shape["data"][0] == {
            "type": "model",
            "id": "gpt-6.1-sol",
            "display_name": "GPT-6.1-Sol",
            "created_at": "2025-01-01T00:00:00Z",
        }


def pooled_client(proxy) -> httpx.Client:
    return httpx.Client(proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=10)


def test_codex_cli_pooling_gets_the_list_and_404s_from_cliproxy(proxy, backend, fake):
    headers = {"authorization": "Bearer own-cli-token", "chatgpt-account-id": "acct-cli-own", "originator": "codex_exec"}
    with pooled_client(proxy) as c:
        r = c.get("https://chatgpt.com/backend-api/codex/models?client_version=0.169.0", headers=headers)
        assert r.status_code == 200 and [m["slug"] for m in r.json()["models"]][:2] == ["gpt-6.1-sol", "gpt-6-astra"]
        body = {"model": "gpt-5.4", "instructions": "", "store": False, "stream": True, "input": []}
        r = c.post("https://chatgpt.com/backend-api/codex/responses", json=body, headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found" and "'gpt-5.4'" in r.json()["error"]["message"]
    assert backend.received == [] and all(q.headers.get("chatgpt-account-id") != "acct-cli-own" for q in fake.catalog.requests)


def test_a_model_no_account_may_use_is_a_404(tmp_path, fake, backend):
    mint_account(tmp_path / "auth", "go@example.com", GO, plan="go", name="go.json")
    p = start_proxy(tmp_path, {"auth-dir": str(tmp_path / "auth"), "codex-base-url": fake.base_url, "oauth-issuer": "http://127.0.0.1:9"})
    try:
        p.wait_log("model catalog from the backend", timeout=20)
        client = openai.OpenAI(base_url=p.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        assert "gpt-6-astra" not in [m.id for m in client.models.list()]
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-6-astra", messages=[{"role": "user", "content": "x"}])
        assert "no account in the pool may use model 'gpt-6-astra'" in e.value.body["message"]
        assert backend.received == []
        saved = json.loads((tmp_path / "auth" / ".cliproxy-state" / "models-catalog.json").read_text())
        assert "gpt-6-astra" not in [m["slug"] for m in saved["accounts"]["go.json"]["models"]]
    finally:
        p.stop()


def test_backend_down_at_start_serves_the_built_in_catalog(tmp_path, backend):
    mint_account(tmp_path / "auth", "plus@example.com", PLUS, name="plus.json")
    p = start_proxy(
        tmp_path,
        {
            "auth-dir": str(tmp_path / "auth"),
            "codex-base-url": "http://127.0.0.1:9/backend-api/codex",
            "oauth-issuer": "http://127.0.0.1:9",
        },
    )
    try:
        p.wait_log("model catalog of plus@example.com not read: backend unreachable", timeout=20)
        with httpx.Client(base_url=p.base_url, timeout=10) as c:
            ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
            assert ids[0] == "gpt-6.1-sol" and "gpt-5.4" not in ids
            assert c.get("/v1/models", params={"client_version": "0.169.0"}).json() == {"models": []}  # the CLI keeps its own
        assert p.proc.poll() is None and "Traceback" not in p.log
    finally:
        p.stop()
