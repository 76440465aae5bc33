"""The running proxy re-reads its config: good edits apply, broken ones are logged and ignored."""

import openai

from tests.proxyproc import start_proxy


def test_hot_reload_keeps_last_good_config(tmp_path, proxy_home, backend_server, backend):
    base = {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url}
    proxy = start_proxy(tmp_path / "p", base)
    try:
        proxy.wait_log("tcp_timeout raised to 630s")
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="x", max_retries=0)
        proxy.write_config({**base, "model-aliases": {"speedy": "gpt-6-luna"}}, wait_for="loaded")
        client.chat.completions.create(model="speedy", messages=[{"role": "user", "content": "x"}])
        assert backend.received[-1].json["model"] == "gpt-6-luna"

        mark = len(proxy.lines)
        proxy.config_path.write_text("routing:\n  strategy: sideways\n")
        line = proxy.wait_log("config change rejected", start=mark)
        assert "routing.strategy" in line and "sideways" in line
        client.chat.completions.create(model="speedy", messages=[{"role": "user", "content": "y"}])
        assert backend.received[-1].json["model"] == "gpt-6-luna"  # the last good config is still in force

        proxy.write_config({**base, "request-timeout-seconds": 900}, wait_for="loaded")
        proxy.wait_log("tcp_timeout raised to 930s")  # mitmproxy's own cut-off stays behind cliproxy's deadline
    finally:
        proxy.stop()


def test_broken_config_at_startup_stops_with_the_reason(tmp_path):
    import pytest

    with pytest.raises(RuntimeError) as e:
        start_proxy(tmp_path / "p", {"routing": {"strategy": 7}})
    assert "routing.strategy" in str(e.value)
