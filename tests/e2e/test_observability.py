"""What a user sees of cliproxy's flows: comments, masked secrets, stored streams (saved with -w)."""

import json

import openai
from mitmproxy import io

from tests.conftest import access_token_of
from tests.fakes.codex_backend import sse, turn
from tests.proxyproc import start_proxy


def test_saved_flows_are_annotated_and_hold_no_token(tmp_path, proxy_home, backend_server, backend):
    out = tmp_path / "flows.mitm"
    proxy = start_proxy(
        tmp_path / "p",
        {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url, "api-keys": ["sk-client-secret-1"]},
        "-w",
        str(out),
        "--set",
        "store_streamed_bodies=true",
    )
    try:
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="sk-client-secret-1", max_retries=0)
        backend.replies.append(sse(turn().reasoning("Think.").text("Streamed words.").events()))
        list(client.chat.completions.create(model="gpt-5.5(high)", messages=[{"role": "user", "content": "a"}], stream=True))
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "b"}])
    finally:
        proxy.stop()
    with out.open("rb") as fh:
        flows = list(io.FlowReader(fh).stream())
    assert len(flows) == 2
    token = access_token_of(next((proxy_home / "auth").glob("*.json")))
    for f in flows:
        dump = json.dumps(f.get_state(), default=lambda b: b.decode("latin-1") if isinstance(b, bytes) else str(b))
        assert token not in dump and "sk-client-secret-1" not in dump
        assert f.request.headers["authorization"] == "Bearer …(redacted)"
    assert flows[0].comment.startswith("chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · 42→17 tok · ttfb ")
    from cliproxy.addons.translate.conversation import render

    assert "[assistant] Streamed words." in render(flows[0].response.content)
    assert token not in proxy.log


def test_untrusted_ca_gets_a_hint_in_the_log(proxy):
    import ssl

    import httpx
    import pytest

    mark = len(proxy.lines)
    with pytest.raises(httpx.ConnectError):
        httpx.get("https://api.openai.com/v1/models", proxy=proxy.proxy_url, verify=ssl.create_default_context(), timeout=10)
    line = proxy.wait_log("refused the proxy's certificate", start=mark)
    assert "api.openai.com" in line and "NODE_EXTRA_CA_CERTS" in line and "cliproxy env" in line
