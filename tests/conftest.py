"""Shared fixtures: the fake Codex backend, an auth dir with an account, the real proxy, clients."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.fakes.codex_backend import CodexBackend, default_responder
from tests.proxyproc import Proxy, start_proxy

ACCOUNT_ID = "acct-0000-test"
CLIENT_KEY = "sk-client-local"


def mint_account(auth_dir: Path, email: str = "dev@example.com", account_id: str = ACCOUNT_ID,
                 plan: str = "plus", expires_in: int = 10 * 24 * 3600, name: str | None = None) -> Path:
    """Write an account file with JWT tokens like the real issuer's (signed with a dummy key)."""
    now = int(time.time())
    claims = {"https://api.openai.com/auth": {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan}}
    id_token = jwt.encode({"email": email, "exp": now + 3600, "iat": now, **claims}, "k", algorithm="HS256")
    access = jwt.encode({"exp": now + expires_in, "iat": now, **claims}, "k", algorithm="HS256")
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = auth_dir / (name or f"codex-{email}-{plan}.json")
    path.write_text(json.dumps({
        "type": "codex", "email": email, "account_id": account_id, "id_token": id_token,
        "access_token": access, "refresh_token": f"rt-{email}",
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "expired": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + expires_in)),
    }))
    path.chmod(0o600)
    return path


def access_token_of(path: Path) -> str:
    return json.loads(path.read_text())["access_token"]


@pytest.fixture(scope="session")
def backend_server():
    with CodexBackend() as backend:
        yield backend


@pytest.fixture
def backend(backend_server: CodexBackend) -> CodexBackend:
    """The session's fake backend, reset for this test."""
    backend_server.replies.clear()
    backend_server.received.clear()
    backend_server.responder = default_responder
    return backend_server


@pytest.fixture(scope="session")
def proxy_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cliproxy")
    mint_account(home / "auth")
    return home


@pytest.fixture(scope="session")
def proxy(proxy_home: Path, backend_server: CodexBackend) -> Proxy:
    """One real mitmdump with the addon for the session, pointed at the fake backend."""
    p = start_proxy(proxy_home, {
        "auth-dir": str(proxy_home / "auth"),
        "codex-base-url": backend_server.base_url,
        "oauth-issuer": "http://127.0.0.1:9",
    })
    yield p
    p.stop()


@pytest.fixture(params=["base_url", "https_proxy"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def openai_client(proxy: Proxy, mode: str, monkeypatch):
    """The official OpenAI SDK, pointed at the proxy by base URL or through HTTPS_PROXY."""
    import openai

    if mode == "base_url":
        return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    # Regular mode, as a user sets it up: HTTPS_PROXY plus the mitmproxy CA, default base URL.
    monkeypatch.setenv("HTTPS_PROXY", proxy.proxy_url)
    monkeypatch.setenv("SSL_CERT_FILE", proxy.ca)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = openai.OpenAI(api_key=CLIENT_KEY, max_retries=0)
    assert str(client.base_url).startswith("https://api.openai.com")
    return client


@pytest.fixture
def raw(proxy: Proxy, mode: str):
    """A plain httpx client for hand-made requests, in the same two modes (paths start with /v1)."""
    import ssl

    if mode == "base_url":
        client = httpx.Client(base_url=proxy.base_url, timeout=30)
    else:
        ctx = ssl.create_default_context(cafile=proxy.ca)
        client = httpx.Client(base_url="https://api.openai.com", proxy=proxy.proxy_url, verify=ctx, timeout=30)
    with client:
        yield client
