"""Shared fixtures: the fake Codex backend, an auth dir with an account, the real proxy, clients."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import pgserver
from tests.fakes.accounts import ACCOUNT_ID, access_token_of, mint_account  # noqa: F401 (re-exported for tests)
from tests.fakes.codex_backend import CodexBackend, default_lite, default_responder
from tests.proxyproc import Proxy, start_proxy

CLIENT_KEY = "sk-client-local"


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
    backend_server.lite = default_lite
    backend_server.pages.clear()
    backend_server.catalog.reset()
    backend_server.images.reset()
    backend_server.ws_handshakes.clear()
    backend_server.ws_replies.clear()
    backend_server.ws_frames.clear()
    backend_server.ws_closes.clear()
    backend_server.wham_usage.clear()
    return backend_server


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (initdb in a temp dir, a free port); skips when it cannot run here."""
    reason = pgserver.why_unavailable()
    if reason:
        pytest.skip(reason)
    with pgserver.running() as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: pgserver.PgServer) -> str:
    """A fresh, empty database on the session's server, for this test alone."""
    return pg_server.new_database()


@pytest.fixture(scope="session")
def proxy_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cliproxy")
    mint_account(home / "auth")
    return home


@pytest.fixture(scope="session")
def proxy(proxy_home: Path, backend_server: CodexBackend) -> Proxy:
    """One real mitmdump with the addon for the session, pointed at the fake backend."""
    p = start_proxy(
        proxy_home,
        {
            "auth-dir": str(proxy_home / "auth"),
            "codex-base-url": backend_server.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
        },
    )
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


def anthropic_sdk(proxy: Proxy, mode: str, monkeypatch):
    """The official Anthropic SDK, pointed at `proxy` by base URL or through HTTPS_PROXY."""
    import anthropic

    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    if mode == "base_url":
        return anthropic.Anthropic(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
    # Regular mode, as a user sets it up: HTTPS_PROXY plus the mitmproxy CA, default base URL.
    monkeypatch.setenv("HTTPS_PROXY", proxy.proxy_url)
    monkeypatch.setenv("SSL_CERT_FILE", proxy.ca)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = anthropic.Anthropic(api_key=CLIENT_KEY, max_retries=0)
    assert str(client.base_url).startswith("https://api.anthropic.com")
    return client


@pytest.fixture
def anthropic_client(proxy: Proxy, mode: str, monkeypatch):
    """The official Anthropic SDK, pointed at the proxy by base URL or through HTTPS_PROXY."""
    return anthropic_sdk(proxy, mode, monkeypatch)


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by where a test lives: `e2e` for tests/e2e (a real mitmdump), `npm` for the ones that
    drive a real npm client (`pytest -m "not npm"` skips the slowest installs)."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)
        module = getattr(item, "module", None)
        if module is not None and any(hasattr(module, n) for n in ("npm_tool", "npm_modules", "codex_exec")):
            item.add_marker(pytest.mark.npm)
