"""Responses over WebSocket through the real proxy: a raw wsproto client (both modes) and the real
Codex CLI with a custom provider that sets `supports_websockets = true`, against a fake backend that
speaks the WebSocket protocol (per-socket history, the real refusals)."""

from __future__ import annotations

import json
import time

import pytest

from tests.codexcli import agent_messages, codex_exec, provider_args
from tests.conftest import ACCOUNT_ID, access_token_of
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import PATH, JSONReply, WSClose, turn, ws_connection_limit, ws_usage_limit
from tests.proxyproc import start_proxy
from tests.wsclient import Closed, Rejected, WSClient, create


def upstream_close(backend, timeout: float = 5) -> int | None:
    """How the fake's last socket was closed, once it has been."""
    deadline = time.monotonic() + timeout
    while not backend.ws_closes and time.monotonic() < deadline:
        time.sleep(0.02)
    return backend.ws_closes[-1][1]


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


def test_history_plus_previous_response_id_is_refused_like_the_real_backend(proxy, backend, mode):
    """The fake holds the socket's history as the real backend does: full history with the id is a duplicate."""
    with WSClient(proxy, mode) as ws:
        first = ws.turn(create("One"))[-1]["response"]
        again = create("Two", previous_response_id=first["id"])
        again["input"] = create("One")["input"] + first["output"] + again["input"]
        err = ws.turn(again)[-1]
        assert err["type"] == "error" and "Duplicate item found" in err["error"]["message"]
        assert ws.turn(create("Three"))[-1]["type"] == "response.completed"  # still usable
    with WSClient(proxy, mode) as ws:  # a fresh socket knows no earlier id
        err = ws.turn(create("Four", previous_response_id=first["id"]))[-1]
        assert err["type"] == "error" and err["error"]["code"] == "previous_response_not_found"


@pytest.mark.parametrize(
    "frame,needle",
    [
        ("not json", "not valid JSON"),
        ('["response.create"]', "JSON object with a string `type`"),
        ('{"type": "response.append", "input": []}', "unknown frame type 'response.append'"),
        ('{"type": "response.create", "input": "hi"}', "`model` is required"),
        ('{"type": "response.create", "model": "gpt-5.5"}', "`input` is required"),
        ('{"type": "response.create", "model": "gpt-5.5", "input": "hi", "tools": "shell"}', "`tools` must be an array"),
        ('{"type": "response.create", "model": "gpt-5.5", "input": "hi", "previous_response_id": 7}', "previous_response_id"),
    ],
)
def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(proxy, backend, mode, frame, needle):
    with WSClient(proxy, mode) as ws:
        ws.send_text(frame)
        err = ws.recv()
        assert err["type"] == "error" and err["status"] == 400 and err["error"]["type"] == "invalid_request_error", err
        assert needle in err["error"]["message"]
        assert ws.turn(create("Still here"))[-1]["type"] == "response.completed"
    assert len(backend.ws_frames) == 1  # the bad frame never went upstream


def test_generate_false_warmup_is_answered_locally(proxy, backend, mode):
    with WSClient(proxy, mode) as ws:
        warm = ws.turn(create("Warm", generate=False))
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        assert backend.ws_frames == []
        follow = create("Real", previous_response_id=warm[-1]["response"]["id"])
        assert ws.turn(follow)[-1]["type"] == "response.completed"
    sent = backend.ws_frames[0].frame
    assert "previous_response_id" not in sent  # the backend never saw the warm-up: its input is sent in full
    assert [i["content"][0]["text"] for i in sent["input"]] == ["Warm", "Real"]


@pytest.fixture
def small(tmp_path, proxy_home, backend_server):
    p = start_proxy(
        tmp_path / "small",
        {
            "auth-dir": str(proxy_home / "auth"),
            "codex-base-url": backend_server.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
            "max-request-bytes": 4096,
            "request-timeout-seconds": 2,
        },
    )
    yield p
    p.stop()


def test_binary_frame_is_closed_1003(small, backend):
    with WSClient(small, "base_url") as ws:
        ws.send_bytes(b"\x00\x01")
        assert ws.wait_closed().code == 1003
    assert backend.ws_frames == [] and upstream_close(backend) == 1000  # the upstream socket is closed cleanly too


def test_oversized_frame_is_closed_1009(small, backend, mode):
    with WSClient(small, mode) as ws:
        ws.send_json(create("x" * 5000))
        closed = ws.wait_closed()
        assert closed.code == 1009 and "max-request-bytes" in closed.reason
    assert backend.ws_frames == []


def test_a_socket_without_response_create_is_closed_1008(small, backend):
    started = time.monotonic()
    with WSClient(small, "base_url") as ws:
        closed = ws.wait_closed(timeout=10)
    assert closed.code == 1008 and "response.create" in closed.reason
    assert 1.5 < time.monotonic() - started < 5


def test_upstream_dropping_the_socket_asks_the_client_to_replay(proxy, backend, mode):
    backend.ws_replies.append(WSClose(turn().text("partial").events(), after=3))
    with WSClient(proxy, mode) as ws:
        ws.send_json(create("Hi"))
        seen = []
        while not isinstance(ev := ws.recv(), Closed):
            seen.append(ev["type"])
        assert seen[:2] == ["response.created", "response.in_progress"]
        assert (ev.code, ev.reason) == (1012, "upstream requires HTTP replay")


def test_connection_limit_error_frame_passes_through(proxy, backend, mode):
    backend.ws_replies.append(ws_connection_limit())
    with WSClient(proxy, mode) as ws:
        err = ws.turn(create("Hi"))[-1]
        assert err["type"] == "error" and err["error"]["code"] == "websocket_connection_limit_reached"
        assert ws.wait_closed().code in (1000, 1012)


@pytest.fixture
def two_accounts(tmp_path, backend_server):
    auth = tmp_path / "auth"
    mint_account(auth, "a@example.com", "acct-a")
    mint_account(auth, "b@example.com", "acct-b")
    p = start_proxy(
        tmp_path / "two", {"auth-dir": str(auth), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"}
    )
    yield p, auth
    p.stop()


def test_usage_limit_frame_cools_the_account_and_the_next_socket_gets_another(two_accounts, backend, mode):
    proxy, auth = two_accounts
    backend.ws_replies.append(ws_usage_limit(1800))
    with WSClient(proxy, mode, headers={"session_id": "s-1"}) as ws:
        ws.send_json(create("Hi"))
        closed = ws.recv()
        assert isinstance(closed, Closed) and (closed.code, closed.reason) == (1012, "upstream requires HTTP replay")
    first = backend.ws_frames[-1].headers["chatgpt-account-id"]
    for _ in range(3):  # every later socket avoids the resting account
        with WSClient(proxy, mode, headers={"session_id": "s-1"}) as ws:
            assert ws.turn(create("Hi"))[-1]["type"] == "response.completed"
        assert backend.ws_frames[-1].headers["chatgpt-account-id"] not in (first,)
    states = {p.name: json.loads(p.read_text()) for p in (auth / ".cliproxy-state").glob("*.json")}  # beside the stores (*.sqlite3)
    assert sum(1 for st in states.values() if st.get("cooldown_until")) == 1, states  # the one that hit its limit rests
    # the other one's quota came from the stream's codex.rate_limits events (the handshake carries no quota headers)
    assert any(st["quota"].get("primary", {}).get("used_percent") == 7.5 for st in states.values() if not st.get("cooldown_until")), states


def test_usage_limit_on_the_last_account_passes_the_error_frame(proxy, backend, mode):
    backend.ws_replies.append(ws_usage_limit(1))
    with WSClient(proxy, mode) as ws:
        err = ws.turn(create("Hi"))[-1]
        assert err["type"] == "error" and err["status"] == 429 and err["error"]["type"] == "usage_limit_reached"
    time.sleep(1.2)  # the reset announced has passed: the account serves again


def test_switched_off_the_upgrade_gets_426(tmp_path, proxy_home, backend_server, backend):
    p = start_proxy(
        tmp_path / "off",
        {
            "auth-dir": str(proxy_home / "auth"),
            "codex-base-url": backend_server.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
            "responses-websocket": False,
        },
    )
    try:
        with pytest.raises(Rejected) as refused:
            WSClient(p, "base_url")
        assert refused.value.status == 426 and refused.value.json["error"]["code"] == "websocket_not_supported"
        assert backend.received == []
    finally:
        p.stop()


@pytest.mark.parametrize("status,expected", [(400, 400), (404, 426)])
def test_refused_upgrade_is_an_openai_error(proxy, backend, mode, status, expected):
    """A refusal comes back in OpenAI's format; an upstream without the transport becomes 426 (the CLI uses HTTP at once)."""
    backend.ws_handshakes.append(JSONReply(status, {"detail": "Bad handshake"}))
    with pytest.raises(Rejected) as refused:
        WSClient(proxy, mode)
    assert refused.value.status == expected and refused.value.json["error"]["message"]


def _tool_call_reply(frame: dict) -> list:
    """Turn 1 of the CLI session: call a tool the CLI offers that changes nothing on disk."""
    names = [t.get("name") for t in frame.get("tools", []) if isinstance(t, dict)]
    if "update_plan" in names:
        name, args = "update_plan", {"plan": [{"step": "Say hello", "status": "completed"}]}
    elif "shell_command" in names:
        name, args = "shell_command", {"command": "echo hi"}
    else:
        name, args = "shell", {"command": ["echo", "hi"]}
    return turn(frame["model"], "resp_cli_1").tool_call(name, args, call_id="call_cli_1").events(empty_output=False)


def test_real_codex_cli_runs_a_tool_loop_over_one_socket(proxy, proxy_home, backend, tmp_path):
    backend.ws_replies += [_tool_call_reply, turn("gpt-5.5", "resp_cli_2").text("Done over the socket.").events(empty_output=False)]
    events = codex_exec(tmp_path, "-m", "gpt-5.5", *provider_args(proxy.base_url, websockets=True), "Make a plan, then say hello")
    assert agent_messages(events) == ["Done over the socket."]
    assert [r.method for r in backend.received if r.path == PATH] == ["GET"]  # one WebSocket, no HTTP turn
    turns = [f for f in backend.ws_frames if f.frame.get("generate") is not False]
    assert len(turns) == 2 and {f.socket for f in turns} == {turns[0].socket}
    second = turns[1].frame
    assert second["previous_response_id"] == "resp_cli_1"  # incremental: only what is new since turn 1
    assert [i.get("type") for i in second["input"]] == ["function_call_output"] and second["input"][0]["call_id"] == "call_cli_1"
    assert turns[0].headers["chatgpt-account-id"] == ACCOUNT_ID and "sk-local" not in turns[0].headers["authorization"]
    token = access_token_of(next((proxy_home / "auth").glob("*.json")))
    assert turns[0].headers["authorization"] == f"Bearer {token}" and token not in proxy.log


def test_an_account_resting_mid_socket_sends_the_client_to_a_fresh_socket(two_accounts, backend):
    """A turn is never served on a resting account: the socket pinned to it is closed for a replay."""
    proxy, _ = two_accounts
    session = {"session_id": "s-9"}
    with WSClient(proxy, "base_url", headers=session) as one:
        assert one.turn(create("a"))[-1]["type"] == "response.completed"
        account = backend.ws_frames[-1].headers["chatgpt-account-id"]
        backend.ws_replies.append(ws_usage_limit(1800))
        with WSClient(proxy, "base_url", headers=session) as two:  # sticky: the same account, which now hits its limit
            two.send_json(create("b"))
            assert two.recv().code == 1012
        assert backend.ws_frames[-1].headers["chatgpt-account-id"] == account
        sent = len(backend.ws_frames)
        one.send_json(create("c"))
        closed = one.recv()
        assert isinstance(closed, Closed) and (closed.code, closed.reason) == (1012, "upstream requires HTTP replay")
        assert len(backend.ws_frames) == sent  # the turn never reached the resting account


def test_a_long_socket_keeps_only_its_newest_messages_on_the_flow(tmp_path, proxy_home, backend_server, backend):
    """mitmproxy keeps every relayed message on a socket's flow for the socket's life (a long Codex CLI
    session grew the proxy by ~145 MB); cliproxy keeps the newest. The saved flow (`-w`, what mitmweb
    shows) ends with the last turn, and the client got every event of every turn."""
    from mitmproxy import io

    from cliproxy.addons.mitm.websocket_relay import KEPT_MESSAGES

    out = tmp_path / "flows.mitm"
    config = {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"}
    p = start_proxy(tmp_path / "long", config, "-w", str(out))
    try:
        text = "z" * 1200
        with WSClient(p, "base_url") as ws:
            for n in range(3):
                backend.ws_replies.append(turn(response_id=f"resp_long{n}").text(text, deltas=list(text)).events())
                events = ws.turn(create(f"turn {n}"))
                assert events[-1]["type"] == "response.completed" and "".join(e.get("delta", "") for e in events) == text
        deadline = time.monotonic() + 10
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        p.stop()
    with out.open("rb") as fh:
        flows = [f for f in io.FlowReader(fh).stream() if getattr(f, "websocket", None) is not None]
    messages = flows[-1].websocket.messages
    assert 3 * 1200 > 2 * KEPT_MESSAGES  # the socket relayed more than the flow may keep
    assert KEPT_MESSAGES <= len(messages) <= 2 * KEPT_MESSAGES, len(messages)
    last = json.loads(messages[-1].content)
    assert last["type"] == "response.completed" and last["response"]["id"] == "resp_long2"
