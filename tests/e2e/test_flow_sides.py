"""What a saved flow holds (mitmdump -w, as mitmweb shows it): the client's exchange on the flow, the
upstream request and raw answer in its state, secrets masked; and a replay of saved flows, by a proxy
that loads them (`client_replay`), serves the clients' requests again through cliproxy."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest
from mitmproxy import http, io

from tests.conftest import CLIENT_KEY, access_token_of
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import JSONReply, sse, turn
from tests.proxyproc import start_proxy


def read(path) -> list[http.HTTPFlow]:
    with path.open("rb") as fh:
        return list(io.FlowReader(fh).stream())


def test_saved_flows_hold_both_sides_and_replay_through_cliproxy(tmp_path, backend_server, backend, monkeypatch):
    mint_account(tmp_path / "auth")
    config = {"auth-dir": str(tmp_path / "auth"), "codex-base-url": backend_server.base_url}
    out = tmp_path / "flows.mitm"
    proxy = start_proxy(tmp_path / "p", config, "-w", str(out), "--set", "store_streamed_bodies=true")
    try:
        chat = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        backend.replies.append(sse(turn().text("Streamed words.").events()))
        list(chat.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "one"}], stream=True))
        backend.replies.append(JSONReply(400, {"error": {"message": "Unsupported parameter: foo", "type": "invalid_request_error"}}))
        with pytest.raises(openai.BadRequestError):
            chat.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "two"}])
        # Through the regular proxy, as Claude Code and the Anthropic SDK use it.
        monkeypatch.setenv("HTTPS_PROXY", proxy.proxy_url)
        monkeypatch.setenv("SSL_CERT_FILE", proxy.ca)
        claude = anthropic.Anthropic(api_key="sk-ant-client-key", max_retries=0)
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=[{"role": "user", "content": "three"}])
        monkeypatch.delenv("HTTPS_PROXY")
    finally:
        proxy.stop()
    stream, failed, messages = read(out)
    token = access_token_of(next((tmp_path / "auth").glob("*.json")))
    for f in (stream, failed, messages):
        dump = json.dumps(f.get_state(), default=lambda b: b.decode("latin-1") if isinstance(b, bytes) else str(b))
        assert token not in dump and "sk-ant-client-key" not in dump and CLIENT_KEY not in dump
        assert f.response.timestamp_end is not None
        sent = f.metadata["cliproxy"]["upstream_request"]
        assert sent["path"] == b"/backend-api/codex/responses" or sent["path"].endswith(b"/responses"), sent["path"]
    assert stream.request.pretty_url == f"{proxy.base_url}/v1/chat/completions" and b'"one"' in stream.request.content
    answer = stream.metadata["cliproxy"]["upstream_answer"]
    assert answer["status"] == 200 and b"event: response.output_text.delta" in answer["body"]  # the raw Codex events
    assert b"chat.completion.chunk" in stream.response.content  # beside the client's translated stream
    assert failed.response.status_code == 400 and b"Unsupported parameter: foo" in failed.metadata["cliproxy"]["upstream_answer"]["body"]
    assert messages.request.pretty_url == "https://api.anthropic.com/v1/messages" and "(redacted)" in messages.request.headers.get(
        "x-api-key", messages.request.headers.get("authorization", "")
    )
    assert messages.comment.endswith("via proxy")

    # Replay the saved flows through a fresh cliproxy: each is served again from the client's request.
    served = len(backend.received)
    again = tmp_path / "replayed.mitm"
    replayer = start_proxy(tmp_path / "r", config, "-w", str(again), "--set", f"client_replay={out}")
    try:
        deadline = time.monotonic() + 20
        while len(backend.received) < served + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the last answer is written to the file
    finally:
        replayer.stop()
    replayed = read(again)
    assert len(backend.received) == served + 3, replayer.log[-2000:]
    assert [f.request.path for f in replayed] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/messages"]
    assert [f.response.status_code for f in replayed] == [200, 200, 200]  # the 400 was the upstream's: served now
    assert all(f.is_replay == "request" and "(replayed)" in f.comment for f in replayed)
    assert [r.json["input"][-1]["content"][0]["text"] for r in backend.received[served:]] == ["one", "two", "three"]
