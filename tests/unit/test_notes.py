"""Flow notes (comments, marks, the client's request back on the flow), masking, and the content views,
on flows made of real translator output from the fake backend's event streams."""

import base64
import json
import time

import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow, tutils

from cliproxy.addons.hooks.notes import ClientSide, FlowNotes, comment, mask_headers, resting
from cliproxy.addons.hooks.views import Conversation, UpstreamAnswer, UpstreamRequest, transcript
from cliproxy.addons.mitm.exchange import ANSWER_LIMIT, RawRecorder, client_request_state, keep_answer
from cliproxy.addons.translate import registry
from cliproxy.addons.translate.conversation import fold, images_in, pretty_json, render, render_answer_json, render_request, usage_line
from cliproxy.auth.pool import Member
from tests.fakes.codex_backend import turn
from tests.unit.test_chat_translate import wire

CODEX = wire(turn().reasoning("Plan it.").text("Hello there.").tool_call("get_weather", {"city": "Paris"}).events())
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40


def translated(route: str, options: dict | None = None) -> bytes:
    """The client's stream for `route`, as cliproxy's own translator makes it from CODEX."""
    stream = registry.stream_translator(route, "gpt-5.5", options or {})
    return b"".join(stream(CODEX) + stream(b""))


@pytest.mark.parametrize(
    "route, options, expected",
    [
        (None, None, ["[reasoning] Plan it.", "[assistant] Hello there.", '[tool call get_weather (call_0002abc)] {"city": "Paris"}']),
        (None, None, ["[end] completed · in 42 (8 cached) · out 17 (5 reasoning)"]),
        (
            "chat",
            {"include_usage": True},
            ["[reasoning] Plan it.", "[assistant] Hello there.", "[end] tool_calls · in 42 (8 cached) · out 17"],
        ),
        ("messages", {}, ["[thinking] Plan it.", "[assistant] Hello there.", "[tool use get_weather (call_0002abc)]"]),
        # Anthropic counts cache reads apart: the view names both, so the total matches the comment's 42
        ("messages", {}, ["[end] tool_use · in 42 (34 new + 8 cached; Anthropic's input_tokens counts the new ones) · out 17"]),
        ("responses", {}, ["[assistant] Hello there.", "[end] completed · in 42 (8 cached) · out 17 (5 reasoning)"]),
    ],
)
def test_answer_streams_render_as_a_conversation(route, options, expected):
    text = render(CODEX if route is None else translated(route, options))
    for line in expected:
        assert line in text, text
    assert text.count("[end]") == 1  # one closing line: how it ended and the tokens, nothing repeated


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n', "[end] no end event: the stream was cut"),
        (b'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n', "[end] stop"),
        (b": keep-alive\n\n: keep-alive\n\ndata: [DONE]\n\n", "[end] [DONE] · 2 keep-alive comment(s)"),
        (b'data: {"error":{"message":"boom"}}\n\n', "[error] boom\n[end] failed"),
    ],
)
def test_how_a_stream_ended_is_one_line(body, expected):
    assert expected in render(body)


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            {
                "model": "gpt-5.5(high)",
                "stream": True,
                "messages": [{"role": "system", "content": "S" * 900}, {"role": "user", "content": "hi"}],
            },
            ["[asked] model gpt-5.5(high) · stream", "chars folded", "[user] hi"],
        ),
        (
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 64,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "system": [{"type": "text", "text": "You are Claude Code. " * 400}],
                "messages": [
                    {"role": "user", "content": "read it"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "Read", "input": {"path": "a.py"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "print(1)"}]},
                ],
                "tools": [{"name": "Read"}, {"name": "Bash"}],
            },
            [
                "thinking enabled (2048 tokens)",
                "[user] read it",
                '[tool use Read (tu_1)] {"path": "a.py"}',
                "[tool result (tu_1)] print(1)",
                "[tools] 2: Read, Bash",
            ],
        ),
        (
            {
                "model": "gpt-5.5",
                "instructions": "Be brief.",
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}, {"type": "input_image"}]},
                    {"type": "function_call", "name": "get_weather", "call_id": "c1", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                ],
                "reasoning": {"effort": "high"},
            },
            ["effort high", "[system] Be brief.", "[user] weather? (image)", "[tool call get_weather (c1)] {}", "[tool result (c1)] sunny"],
        ),
        ({"model": "gpt-5.5", "input": "plain text"}, ["[user] plain text"]),
        ({"model": "gpt-5.5", "messages": [{"role": "tool", "tool_call_id": "c9", "content": "42"}]}, ["[tool result (c9)] 42"]),
    ],
)
def test_request_side_renders_what_the_client_sent(body, expected):
    text = render_request(body)
    for line in expected:
        assert line in text, text
    assert max(len(line) for line in text.splitlines()) < 700  # a 9 KB system prompt stays one short line


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            {
                "object": "chat.completion",
                "choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
            "[assistant] Hi\n[end] stop · in 3 · out 1",
        ),
        ({"type": "message", "content": [{"type": "text", "text": "Yo"}], "stop_reason": "end_turn"}, "[assistant] Yo\n[end] end_turn"),
        (
            {
                "object": "response",
                "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "R"}]}],
            },
            "[assistant] R\n[end] completed",
        ),
        ({"error": {"message": "no such model"}}, "[error] no such model"),
        ({"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}, "[image 1] PNG, 48 bytes"),
    ],
)
def test_json_answers_render(body, expected):
    assert render_answer_json(body) == expected


def test_images_are_found_decoded_and_never_shown_as_text():
    b64 = base64.b64encode(PNG).decode()
    images_answer = json.dumps({"data": [{"b64_json": b64}]}).encode()
    stream = wire(turn().image(b64).events())
    assert images_in(images_answer) == [PNG]
    assert images_in(stream) == [PNG]  # once, though the final answer repeats it
    assert images_in(json.dumps({"output": [{"type": "image_generation_call", "result": b64}]}).encode()) == [PNG]
    assert images_in(b"not json") == []
    chat = (
        "data: " + json.dumps({"choices": [{"delta": {"content": f"![generated image](data:image/png;base64,{b64})"}}]}) + "\n\n"
    ).encode()
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}}
    anthropic = (
        "event: content_block_start\ndata: " + json.dumps({"type": "content_block_start", "index": 0, "content_block": block}) + "\n\n"
    ).encode()
    assert images_in(chat) == [PNG] and images_in(anthropic) == [PNG]
    assert "[assistant] ![generated image]((image/png, 48 bytes))" in render(chat) and "[image] PNG, 48 bytes" in render(anthropic)
    assert b64[:20] not in render(stream) and "[image] PNG" in render(stream)


def test_fold_and_pretty_json():
    assert fold("a  b\nc") == "a b c"
    folded = fold("x" * 5000, 100)
    assert len(folded) < 140 and "chars folded" in folded
    assert "chars folded" in pretty_json(json.dumps({"instructions": "y" * 9000}).encode())
    assert pretty_json(b"\xffnot json") == "\ufffdnot json"


def test_usage_line_reads_every_shape():
    assert (
        usage_line({"input_tokens": 42, "cached_tokens": 8, "output_tokens": 17, "reasoning_tokens": 5})
        == "in 42 (8 cached) · out 17 (5 reasoning)"
    )
    assert usage_line({"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}}) == "in 3 · out 1"
    assert usage_line({"output_tokens": 3}).startswith("in ? · out 3")


# -- comments ---------------------------------------------------------------------------------------

BASE = {"route": "chat", "client_model": "gpt-5.5(high)", "model": "gpt-5.5", "effort": "high", "account": "dev@example.com"}


@pytest.mark.parametrize(
    "st, running, expected",
    [
        (
            {**BASE, "usage": {"input_tokens": 5, "output_tokens": 7}},
            False,
            "chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · 5→7 tok",
        ),
        ({**BASE, "door": "base URL"}, False, "chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · via base URL"),
        ({**BASE, "door": "proxy (replayed)"}, False, "chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · via proxy (replayed)"),
        (
            {"route": "models", "t0": 100.0, "door": "proxy"},
            False,
            "models · answered by cliproxy · via proxy",
        ),  # no meaningless ttfb 0.00s
        (
            {"route": "images_generations", "model": "gpt-image-1.5", "images_path": "native", "t0": 100.0},
            False,
            "images_generations · gpt-image-1.5 · image via native · 2.00s",
        ),
        (
            {**BASE, "t0": 100.0, "upstream": True},
            True,
            "chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · waiting for the upstream…",
        ),
        (
            {**BASE, "t0": 100.0, "t_headers": 100.5, "upstream": True},
            True,
            "chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · ttfb 0.50s · streaming…",
        ),
        (
            {**BASE, "t0": 100.0, "t_headers": 100.5, "upstream": True},
            False,
            "chat · gpt-5.5(high) → gpt-5.5 · high · dev@example.com · ttfb 0.50s · 2.00s",
        ),
        (
            {**BASE, "error": "429 All credentials are cooling down", "rest": "a@x usage_limit_reached until 15:42 (in 58m)"},
            False,
            "✗ 429 a@x usage_limit_reached until 15:42 (in 58m) · chat · ",
        ),
        ({**BASE, "failover": 1, "tried_labels": ["a@x", "b@x"]}, False, "· failover ×1 (a@x → b@x)"),
        (
            {"route": "responses", "model": "gpt-5.5", "effort": "medium", "service_tier": "priority"},
            False,
            "responses · gpt-5.5 · medium · tier priority",
        ),
        ({"route": "responses", "model": "gpt-5.5", "effort": "medium", "service_tier": "default"}, False, "responses · gpt-5.5 · medium"),
        ({"route": "chat", "ended_locally": "stop"}, False, "chat · ended at the client's stop sequence"),
        ({"route": "chat", "ended_locally": "length"}, False, "chat · ended at the client's token limit"),
    ],
)
def test_comment(st, running, expected):
    text = comment(st, now=102.0, running=running)
    assert text.startswith(expected) or (expected.startswith("·") and expected in text), text


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


def test_comment_shows_the_accounts_quota():
    from cliproxy.auth.quota import parse_quota, quota_summary
    from tests.fakes.codex_backend import QUOTA_HEADERS

    summary = quota_summary(parse_quota(QUOTA_HEADERS))
    assert "dev@example.com (5h 12.5% · week 40%)" in comment(
        {"route": "chat", "model": "gpt-5.5", "account": "dev@example.com", "quota": summary}
    )


def test_resting_names_each_account_and_why():
    now = 1_000_000.0
    limited = Member("a", "a@x", None, cooldown_until={"gpt-5.5": now + 3600}, limited={"gpt-5.5"})
    backoff = Member("b", "b@x", None, cooldown_until={"*": now + 30})
    parked = Member("c", "c@x", None, parked=True)
    free = Member("d", "d@x", None)
    other = Member("e", "e@x", None, models=frozenset({"gpt-6"}), cooldown_until={"*": now + 30})
    text = resting([limited, backoff, parked, free, other], "gpt-5.5", now)
    assert text.startswith("a@x usage_limit_reached until ") and "(in 60m)" in text
    assert "b@x rate limited (429) until " in text and "(in 30s)" in text and "c@x needs a new login" in text
    assert "d@x" not in text and "e@x" not in text


# -- the addons on flows ---------------------------------------------------------------------------


def served_flow(route="chat", stream=True):
    """A flow as cliproxy leaves it after serving: the client's request kept, the upstream request on it."""
    f = tflow.tflow(
        req=tutils.treq(
            method=b"POST",
            path=b"/v1/chat/completions",
            content=json.dumps({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hey"}]}).encode(),
        )
    )
    f.request.headers["authorization"] = "Bearer sk-client-secret"
    st = {"route": route, "format": "openai", "t0": time.time() - 1, "door": "proxy", "model": "gpt-5.5", "client_model": "gpt-5.5"}
    f.metadata["cliproxy"] = st
    ClientSide().request(f)
    f.request.url = "https://chatgpt.com/backend-api/codex/responses"
    f.request.headers["authorization"] = "Bearer eyJ.upstream-token"
    f.request.content = b'{"model": "gpt-5.5", "input": []}'
    st.update(
        {
            "upstream": True,
            "account": "dev@example.com",
            "tried_labels": ["dev@example.com"],
            "usage": {"input_tokens": 42, "output_tokens": 17},
        }
    )
    f.response = tutils.tresp(headers=http.Headers(content_type="text/event-stream"), content=translated(route, {"include_usage": True}))
    f.response.timestamp_end = None  # a client that hung up after [DONE]
    keep_answer(st, 200, [("content-type", "text/event-stream"), ("set-cookie", "__cf=secret-cookie")], CODEX)
    return f


def test_the_flow_shows_the_clients_request_and_keeps_the_upstream_one():
    f = served_flow()
    with taddons.context(FlowNotes()):
        FlowNotes().response(f)
    st = f.metadata["cliproxy"]
    assert f.request.pretty_url.endswith("/v1/chat/completions") and b'"hey"' in f.request.content
    assert f.request.headers["authorization"] == "Bearer …(redacted)"
    assert st["shown"] and b"chatgpt.com" not in f.request.content
    assert st["upstream_request"]["path"] == b"/backend-api/codex/responses"
    assert f.response.timestamp_end is not None
    dump = json.dumps(f.get_state(), default=lambda b: b.decode("latin-1") if isinstance(b, bytes) else str(b))
    assert "sk-client-secret" not in dump and "upstream-token" not in dump and "secret-cookie" not in dump
    assert f.comment.startswith("chat · gpt-5.5 · dev@example.com · 42→17 tok · ") and f.comment.endswith("via proxy")


@pytest.mark.parametrize("status, mark", [(200, ":x:"), (429, ":warning:")])
def test_failures_are_marked_a_failed_stream_most_of_all(status, mark):
    f = served_flow()
    f.response.status_code = status
    f.metadata["cliproxy"]["error"] = "stream error: cut"
    with taddons.context(FlowNotes()):
        FlowNotes().response(f)
    assert f.marked == mark and f.comment.startswith("✗ stream error: cut · chat")


def test_base_url_flows_show_the_listeners_address_not_the_placeholder():
    f = tflow.tflow(req=tutils.treq(host="cliproxy.invalid", port=80, path=b"/v1/models", method=b"GET"))
    kept = client_request_state(f.request, ("127.0.0.1", 8317))
    req = http.Request.from_state(kept)
    assert req.pretty_url == "http://127.0.0.1:8317/v1/models" and req.headers["host"] == "127.0.0.1:8317"


def content_view(view, f, message):
    meta = contentviews.Metadata(flow=f, http_message=message, content_type=message.headers.get("content-type"))
    return view.render_priority(message.raw_content or b"", meta), view.prettify(message.raw_content or b"", meta)


@pytest.mark.parametrize("side", ["request", "response"])
def test_views_on_a_served_flow(side):
    f = served_flow()
    with taddons.context(FlowNotes()):
        FlowNotes().response(f)
    message = getattr(f, side)
    priority, text = content_view(Conversation(), f, message)
    assert priority > 1  # chosen by itself on both tabs
    assert text.splitlines()[:2] == ["── the client sent POST /v1/chat/completions · gpt-5.5", "[asked] model gpt-5.5"]
    assert "[user] hey" in text and "[assistant] Hello there." in text and "in 42 (8 cached)" in text
    priority, text = content_view(UpstreamRequest(), f, message)
    assert priority < 0 and text.startswith("POST https://chatgpt.com/backend-api/codex/responses\n(account dev@example.com)")
    assert "Bearer …(redacted)" in text and '"input": []' in text
    _, text = content_view(UpstreamAnswer(), f, message)
    assert text.startswith("200\ncontent-type: text/event-stream\nset-cookie: …(redacted)")
    assert "event: response.output_text.delta" in text


def test_views_on_a_local_answer_and_an_unclaimed_flow():
    f = tflow.tflow(resp=True)
    f.metadata["cliproxy"] = {"route": "models"}
    assert content_view(UpstreamRequest(), f, f.request)[1] == "cliproxy answered this request itself: nothing was sent upstream."
    g = tflow.tflow(resp=tutils.tresp(headers=http.Headers(content_type="text/event-stream"), content=CODEX))
    assert content_view(Conversation(), g, g.response)[0] > 1  # any event stream
    assert "did not serve this flow" in content_view(UpstreamAnswer(), g, g.response)[1]
    assert "[assistant] Hello there." in transcript(g, None)


def test_a_stream_not_stored_says_how_to_keep_it():
    f = tflow.tflow(resp=tutils.tresp(headers=http.Headers(content_type="text/event-stream"), content=b""))
    assert "store_streamed_bodies=true" in transcript(f, None)


def test_raw_recorder_keeps_what_the_wrappers_read_and_is_bounded():
    class Translator:
        ends_on_upstream_error = True

        def __call__(self, data):
            return [data.upper()]

    inner = Translator()
    rec = RawRecorder(inner)
    assert rec.translator is inner and rec.ends_on_upstream_error
    assert rec(b"data: delta") == [b"DATA: DELTA"] and rec.t_first_token is not None
    rec(b"x" * ANSWER_LIMIT)
    assert len(rec.raw) == ANSWER_LIMIT and rec.cut


def test_secrets_are_masked():
    h = http.Headers(authorization="Bearer eyJhbGciOi.secret.token", x_api_key="sk-ant-secret", accept="x")
    mask_headers(h)
    assert h["authorization"] == "Bearer …(redacted)" and h["x-api-key"] == "…(redacted)" and h["accept"] == "x"


def test_notes_addon_masks_after_the_request_went_upstream():
    notes = FlowNotes()
    with taddons.context(notes):
        f = tflow.tflow(resp=True)
        f.request.headers["authorization"] = "Bearer eyJ.secret"
        f.metadata["cliproxy"] = {"route": "chat", "model": "gpt-5.5", "error": "429 cooling"}
        notes.responseheaders(f)
        notes.response(f)
    assert "secret" not in json.dumps(f.get_state(), default=str)
    assert f.comment.startswith("✗ 429 cooling") and f.marked
