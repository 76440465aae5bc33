"""Flow annotations, secret masking and the SSE conversation view."""

import json

from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow, tutils

from cliproxy.addons.hooks.notes import FlowNotes, SSEConversation, comment, mask_headers
from cliproxy.addons.translate.conversation import render
from tests.fakes.codex_backend import turn
from tests.unit.test_chat_translate import wire

CODEX = wire(turn().reasoning("Plan it.").text("Hello there.").tool_call("get_weather", {"city": "Paris"}).events())


def test_codex_stream_renders_as_a_conversation():
    text = render(CODEX)
    assert "[reasoning] Plan it." in text
    assert "[assistant] Hello there." in text
    assert '[tool call get_weather (call_0002abc)] {"city": "Paris"}' in text
    assert "[usage] in 42 (cached 8) · out 17 (reasoning 5)" in text


def test_chat_and_anthropic_streams_render():
    from cliproxy.addons.translate.chat import ChatStream

    stream = ChatStream("gpt-5.5", include_usage=True)
    chat = b"".join(stream(CODEX) + stream(b""))
    text = render(chat)
    assert "[reasoning] Plan it." in text and "[assistant] Hello there." in text
    assert "[finish] tool_calls" in text and "[done] [DONE]" in text
    anthropic = (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}\n\n'
    )
    assert render(anthropic).splitlines()[:2] == ["[assistant] Hi", "[usage] in None · out 3"]


def test_content_view_is_chosen_for_event_streams():
    flow = tflow.tflow(resp=tutils.tresp(headers=http.Headers(content_type="text/event-stream"), content=CODEX))
    view = SSEConversation()
    meta = contentviews.Metadata(flow=flow, http_message=flow.response, content_type="text/event-stream")
    assert view.render_priority(CODEX, meta) > 1
    assert "[assistant] Hello there." in view.prettify(CODEX, meta)


def test_secrets_are_masked_and_comment_names_no_token():
    h = http.Headers(authorization="Bearer eyJhbGciOi.secret.token", x_api_key="sk-ant-secret", accept="x")
    mask_headers(h)
    assert h["authorization"] == "Bearer …(redacted)" and h["x-api-key"] == "…(redacted)" and h["accept"] == "x"
    st = {
        "route": "chat",
        "client_model": "gpt-5.5(high)",
        "model": "gpt-5.5",
        "effort": "high",
        "account": "dev@example.com",
        "usage": {"input_tokens": 5, "output_tokens": 7},
        "failover": 1,
        "tried_labels": ["a@x", "b@x"],
    }
    text = comment(st)
    assert text.startswith("chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · 5→7 tok")
    assert "failover ×1 (a@x → b@x)" in text


def test_notes_addon_masks_after_the_request_went_upstream():
    notes = FlowNotes()
    with taddons.context(notes):
        f = tflow.tflow(resp=True)
        f.request.headers["authorization"] = "Bearer eyJ.secret"
        f.metadata["cliproxy"] = {"route": "chat", "model": "gpt-5.5", "error": "429 cooling"}
        notes.responseheaders(f)
        notes.response(f)
    assert "secret" not in json.dumps(f.get_state(), default=str)
    assert f.comment.endswith("✗ 429 cooling") and f.marked


def test_comment_shows_the_accounts_quota():
    from cliproxy.auth.quota import parse_quota, quota_summary
    from tests.fakes.codex_backend import QUOTA_HEADERS

    summary = quota_summary(parse_quota(QUOTA_HEADERS))
    assert summary == "5h 12.5% · week 40%"
    st = {"route": "chat", "model": "gpt-5.5", "account": "dev@example.com", "quota": summary}
    assert "dev@example.com (5h 12.5% · week 40%)" in comment(st)
    assert quota_summary({}) == "" and quota_summary({"primary": {"used_percent": "x"}}) == ""


def test_comment_names_a_tier_other_than_the_default():
    base = {"route": "responses", "model": "gpt-5.5", "effort": "medium"}
    assert comment({**base, "service_tier": "priority"}) == "responses · gpt-5.5 · medium · tier priority"
    assert comment({**base, "service_tier": "default"}) == comment(base) == "responses · gpt-5.5 · medium"


def test_comment_says_when_cliproxy_ended_the_answer():
    assert "ended at the client's stop sequence" in comment({"route": "chat", "ended_locally": "stop"})
    assert "ended at the client's token limit" in comment({"route": "chat", "ended_locally": "length"})
    assert "ended" not in comment({"route": "chat"})


def test_a_websocket_comment_has_one_line_per_turn():
    st = {
        "route": "responses_websocket",
        "account": "dev@example.com",
        "turns": [
            {
                "model": "gpt-5.5",
                "client_model": "gpt-5.5(high)",
                "effort": "high",
                "usage": {"input_tokens": 42, "output_tokens": 17},
                "ttfe": 0.125,
                "seconds": 1.5,
            },
            {"model": "gpt-5.5", "effort": "medium", "seconds": 0.2, "error": "429 The usage limit has been reached"},
        ],
    }
    lines = comment(st).splitlines()
    assert lines[0].startswith("responses_websocket · dev@example.com")
    assert lines[1] == "turn 1 · gpt-5.5(high) → gpt-5.5 · high · 42→17 tok · ttfe 0.12s · 1.50s"
    assert lines[2] == "turn 2 · gpt-5.5 · medium · 0.20s · ✗ 429 The usage limit has been reached"
