"""Responses over WebSocket through the real proxy: a raw wsproto client (both modes) and the real
Codex CLI with a custom provider that sets `supports_websockets = true`, against a fake backend that
speaks the WebSocket protocol (per-socket history, the real refusals)."""

from __future__ import annotations

import pytest

from tests.conftest import ACCOUNT_ID
from tests.fakes.codex_backend import PATH
from tests.wsclient import WSClient, create


def test_a_turn_over_the_socket_is_translated_and_pooled(proxy, backend, mode):
    with WSClient(proxy, mode) as ws:
        assert ws.headers["x-codex-turn-state"].startswith("ts-") and ws.headers["x-models-etag"] == "etag-fake-1"
        assert ws.headers["openai-model"] == "gpt-5.5"
        events = ws.turn(create("Hi there", model="gpt-5.5(high)", temperature=0.2))
        assert [e["type"] for e in events][0] == "codex.rate_limits" and events[-1]["type"] == "response.completed"
        assert "You said: Hi there" in "".join(e.get("delta", "") for e in events)
        first = events[-1]["response"]["id"]
        more = ws.turn(create("And again", previous_response_id=first))
        assert more[-1]["type"] == "response.completed"
    hs = [r for r in backend.received if r.path == PATH]
    assert [r.method for r in hs] == ["GET"]  # one socket, no HTTP turn
    h = hs[0].headers
    assert h["chatgpt-account-id"] == ACCOUNT_ID and "sk-client-local" not in h["authorization"]
    assert h["openai-beta"] == "responses_websockets=2026-02-06"
    frames = [f.frame for f in backend.ws_frames]
    assert frames[0]["model"] == "gpt-5.5" and frames[0]["reasoning"]["effort"] == "high" and "temperature" not in frames[0]
    assert frames[1]["previous_response_id"] == first and len(frames[1]["input"]) == 1  # incremental
