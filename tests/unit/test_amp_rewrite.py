"""Amp request fix-ups and the response rewriter for locally served calls (pure functions)."""

import gzip
import json
import time

import pytest

from cliproxy.addons.core import amp_wire as amp

# -- request side -------------------------------------------------------------------------------


def test_sanitize_drops_unsigned_thinking_and_tool_use_signatures():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "thinking", "thinking": "user side is left alone"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "a", "signature": ""},
                    {"type": "thinking", "thinking": "b", "signature": "   "},
                    {"type": "thinking", "thinking": "c"},
                    {"type": "thinking", "thinking": "d", "signature": 5},
                    {"type": "thinking", "thinking": "e", "signature": "sig-ok"},
                    {"type": "text", "text": "hi", "signature": ""},
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"n": 12345678901234567890}, "signature": ""},
                ],
            },
            {"role": "assistant", "content": "plain"},
        ],
    }
    assert amp.sanitize_body(body) is True
    assert body["messages"][0]["content"] == [{"type": "thinking", "thinking": "user side is left alone"}]
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "e", "signature": "sig-ok"},
        {"type": "text", "text": "hi", "signature": ""},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"n": 12345678901234567890}},
    ]
    assert amp.sanitize_body(body) is False
    assert amp.sanitize_body({"input": []}) is False and amp.sanitize_body(None) is False


@pytest.mark.parametrize(
    "value,expected",
    [
        ("context-1m-2025-08-07", ""),
        ("a, context-1m-2025-08-07 ,b", "a,b"),
        ("interleaved-thinking-2025-05-14", "interleaved-thinking-2025-05-14"),
    ],
)
def test_strip_beta(value, expected):
    assert amp.strip_beta(value) == expected


def test_scrub_query_only_removes_client_keys():
    q = [("key", "sk-client"), ("key", "keep"), ("auth_token", "sk-client"), ("auth_token", "other"), ("x", "sk-client")]
    assert amp.scrub_query(q, ["sk-client"]) == [("key", "keep"), ("auth_token", "other"), ("x", "sk-client")]
    assert amp.scrub_query(q, []) == q


def test_upstream_headers_drop_client_identity_and_inject_the_amp_key():
    client = [
        ("Authorization", "Bearer sk-client"),
        ("X-Api-Key", "sk-client"),
        ("x-goog-api-key", "g"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Via", "1.1 x"),
        ("X-Stainless-Os", "Linux"),
        ("Referer", "r"),
        ("Sec-Ch-Ua", "x"),
        ("Accept-Encoding", "gzip, br"),
        ("X-Amp-Thread-Id", "T-1"),
        ("Content-Type", "application/json"),
    ]
    out = amp.upstream_headers(client, "sgamp_key")
    assert out == [
        ("X-Amp-Thread-Id", "T-1"),
        ("Content-Type", "application/json"),
        ("accept-encoding", "identity"),
        ("x-api-key", "sgamp_key"),
        ("authorization", "Bearer sgamp_key"),
    ]
    assert ("authorization", "Bearer ") not in amp.upstream_headers(client, "")
    assert not any(k.lower() in ("authorization", "x-api-key") for k, _ in amp.upstream_headers(client, ""))


@pytest.mark.parametrize(
    "upstream,path,query,expected",
    [
        ("https://ampcode.com", "/api/internal", "getUserInfo", "https://ampcode.com/api/internal?getUserInfo"),
        ("http://127.0.0.1:9/base/", "/api/threads/T-1", "", "http://127.0.0.1:9/base/api/threads/T-1"),
        ("http://h/p?tenant=a", "/x", "b=1", "http://h/p/x?tenant=a&b=1"),
    ],
)
def test_join_url(upstream, path, query, expected):
    assert amp.join_url(upstream, path, query) == expected


def test_forwarded_query_is_byte_for_byte_unless_a_key_goes():
    assert amp.forwarded_query("getUserInfo", ["sk-c"]) == "getUserInfo"  # Amp's bare RPC name stays bare
    assert amp.forwarded_query("a=%2F&b", ["sk-c"]) == "a=%2F&b"
    assert amp.forwarded_query("key=sk-c&key=keep&x=1", ["sk-c"]) == "key=keep&x=1"


PAYLOAD = json.dumps({"ok": True, "n": list(range(50))}).encode()


@pytest.mark.parametrize(
    "body,expected",
    [
        (gzip.compress(PAYLOAD), PAYLOAD),  # hidden gzip
        (gzip.compress(PAYLOAD)[:-12], None),  # truncated: passed on unchanged
        (b"\x1f\x8b" + b"garbage" * 5, None),  # corrupt
        (b"", None),
        (b"\x1f", None),  # one byte
        (PAYLOAD, None),  # plain JSON
        (gzip.compress(b'{"error":"not found"}'), b'{"error":"not found"}'),  # error bodies too
    ],
)
def test_hidden_gzip_repair(body, expected):
    assert amp.repair_hidden_gzip(body) == expected


@pytest.mark.parametrize(
    "path,method,expected",
    [
        ("/api/provider/anthropic/v1/messages", "POST", ("anthropic", "messages", None)),
        ("/api/provider/anthropic/v1/messages?beta=true", "POST", ("anthropic", "messages", None)),
        ("/api/provider/anthropic/v1/messages/count_tokens", "POST", ("anthropic", "count_tokens", None)),
        ("/api/provider/openai/v1/responses", "POST", ("openai", "responses", None)),
        ("/api/provider/groq/chat/completions", "POST", ("groq", "chat", None)),
        ("/api/provider/openai/v1/completions", "POST", ("openai", "completions", None)),
        ("/api/provider/openai/models", "GET", ("openai", "models", None)),
        ("/api/provider/anthropic/v1/models", "GET", ("anthropic", "models", None)),
        ("/api/provider/google/v1beta/models", "GET", ("google", "gemini_models", None)),
        ("/api/provider/google/v1beta/models/gemini-2.5-pro:streamGenerateContent", "POST", ("google", "gemini", "gemini-2.5-pro")),
        (
            "/api/provider/google/v1beta1/publishers/google/models/gemini-3-pro-preview:generateContent",
            "POST",
            ("google", "gemini", "gemini-3-pro-preview"),
        ),
        ("/api/provider/google/v1beta1/publishers/google/models", "GET", ("google", "passthrough", None)),
        ("/api/provider/openai/v1/chat/completions", "GET", ("openai", "unknown", None)),
        ("/api/provider/openai/v1/embeddings", "POST", ("openai", "unknown", None)),
    ],
)
def test_provider_kind(path, method, expected):
    assert amp.provider_kind(path, method) == expected


# -- response side --------------------------------------------------------------------------------


def test_tool_casing_from_the_request():
    req = {
        "tools": [{"name": "Bash"}, {"name": "my_tool"}, {"name": "Grep"}, {"name": "grep"}],
        "tool_choice": {"type": "tool", "name": "READ"},
    }
    assert amp.tool_casing(req) == {"bash": "Bash", "my_tool": "my_tool", "grep": None, "read": "READ"}


def rewriter(casing=None, model="claude-sonnet-4-5(high)"):
    return amp.ResponseRewriter(model, casing or {})


def test_whole_message_rewrite():
    casing = amp.tool_casing({"tools": [{"name": "Edit_File"}, {"name": "grep"}, {"name": "Grep"}]})
    body = {
        "id": "msg_1",
        "type": "message",
        "model": "gpt-5.5",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "t1", "name": "bash", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "edit_file", "input": {}},
            {"type": "tool_use", "id": "t3", "name": "grep", "input": {}},  # ambiguous in the request: untouched
            {"type": "tool_use", "id": "t4", "name": "GLOB", "input": {}},
            {"type": "tool_use", "id": "t5", "name": "custom", "input": {}},
        ],
    }
    out = json.loads(rewriter(casing).rewrite_body(json.dumps(body).encode()))
    assert out["model"] == "claude-sonnet-4-5(high)"
    assert [b["type"] for b in out["content"]] == ["text"] + ["tool_use"] * 5  # thinking dropped beside tool_use
    assert [b["name"] for b in out["content"][1:]] == ["Bash", "Edit_File", "grep", "glob", "custom"]
    assert all(b["signature"] == "" for b in out["content"][1:])


def test_thinking_kept_without_tool_use_and_signature_injected():
    body = {
        "model": "gpt-5.5",
        "content": [
            {"type": "thinking", "thinking": "x"},
            {"type": "thinking", "thinking": "y", "signature": "s"},
            {"type": "text", "text": "t"},
        ],
    }
    out = rewriter().rewrite_json(body)
    assert [b.get("signature") for b in out["content"]] == ["", "s", None]


@pytest.mark.parametrize(
    "obj,path",
    [
        ({"model": "gpt-5.5", "choices": []}, ("model",)),
        ({"type": "message_start", "message": {"model": "gpt-5.5", "content": []}}, ("message", "model")),
        ({"type": "response.completed", "response": {"model": "gpt-5.5"}}, ("response", "model")),
        ({"modelVersion": "gpt-5.5", "candidates": []}, ("modelVersion",)),
        ({"response": {"modelVersion": "gpt-5.5"}}, ("response", "modelVersion")),
    ],
)
def test_model_name_restored_wherever_it_is(obj, path):
    out = rewriter(model="gpt-5.2(xhigh)").rewrite_json(obj)
    for key in path:
        out = out[key]
    assert out == "gpt-5.2(xhigh)"


def test_no_client_model_leaves_model_alone():
    assert amp.ResponseRewriter(None).rewrite_json({"model": "gpt-5.5"}) == {"model": "gpt-5.5"}


def anthropic_stream() -> bytes:
    events = [
        (
            "message_start",
            {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "gpt-5.5", "content": []}},
        ),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "plan"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "bash", "input": {}}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"cmd":"ls"}'}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {k}\ndata: {json.dumps(v)}\n\n".encode() for k, v in events)


def parse(stream: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in stream.decode().split("\n") if line.startswith("data: {")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100_000])
def test_stream_rewrite_at_any_chunking(size):
    raw = anthropic_stream()
    wrapped = amp.SSERewriter(lambda data: [data] if data else [], rewriter())
    out = []
    for i in range(0, len(raw), size):
        piece = wrapped(raw[i : i + size])
        assert isinstance(piece, list) and b"" not in piece
        out += piece
    out += wrapped(b"")
    events = parse(b"".join(out))
    assert [e["type"] for e in events] == [e["type"] for e in parse(raw)]  # nothing dropped, thinking kept
    assert events[0]["message"]["model"] == "claude-sonnet-4-5(high)"
    blocks = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b.get("signature") for b in blocks] == ["", ""]  # exactly two injected empty signatures
    assert blocks[1]["name"] == "Bash"
    assert b"".join(out).count(b"event: ") == raw.count(b"event: ")


def test_stream_passes_non_json_and_done_through():
    raw = b': keep-alive\n\ndata: {"model":"gpt-5.5","choices":[]}\n\ndata: [DONE]\n\n'
    out = amp.rewrite_sse(raw, rewriter(model="x"))
    assert out == b': keep-alive\n\ndata: {"model":"x","choices":[]}\n\ndata: [DONE]\n\n'


def test_crlf_events_and_a_tail_without_blank_line():
    raw = b'event: a\r\ndata: {"model":"gpt-5.5"}\r\n\r\ndata: {"model":"gpt-5.5"}'
    assert amp.rewrite_sse(raw, rewriter(model="m")) == b'event: a\r\ndata: {"model":"m"}\r\n\r\ndata: {"model":"m"}'


def test_wrapper_keeps_what_cliproxy_reads_from_the_stream():
    class Inner:
        ends_on_upstream_error = True
        translator = object()

        def __call__(self, data):
            return data  # bytes, not a list

    inner = Inner()
    wrapped = amp.SSERewriter(inner, rewriter())
    assert wrapped.translator is inner.translator and wrapped.ends_on_upstream_error is True
    assert wrapped(b'data: {"a":1}\n\n') == [b'data: {"a":1}\n\n'] and wrapped(b"") == []


def test_wrapper_never_raises():
    def broken(data):
        raise RuntimeError("boom")

    assert amp.SSERewriter(broken, rewriter())(b"data: x\n\n") == []


def _stream(scale: int) -> bytes:
    """Many small delta events and one large one (a long line is where a rescan from the start would show)."""
    chunk = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"' + b"x" * 40 + b'"}\n\n'
    big = b'data: {"type":"response.output_text.delta","delta":"' + b"y" * (16_000 * scale) + b'"}\n\n'
    return chunk * (1_000 * scale) + big + b'data: {"type":"response.completed","response":{"model":"gpt-5.5"}}\n\n'


def _rewrite_cpu_seconds(raw: bytes, step: int = 8) -> float:
    """CPU time (not wall time: other processes' load does not count) to rewrite `raw` fed in tiny chunks."""
    wrapped = amp.SSERewriter(lambda d: [d] if d else [], rewriter(model="m"))
    t = time.process_time()
    out = []
    for i in range(0, len(raw), step):  # events split everywhere
        out += wrapped(raw[i : i + step])
    out += wrapped(b"")
    seconds = time.process_time() - t
    assert b"".join(out).endswith(b'"model":"m"}}\n\n') and len(b"".join(out)) == len(raw) - len(b"gpt-5.5") + 1
    return seconds


def test_stream_rewrite_is_linear():
    """Four times the stream costs about four times the CPU (a rescan of the buffer per chunk would cost ~16x).
    Best of three runs per size, compared within this run, so a slow or busy machine moves both alike."""
    small, large = _stream(1), _stream(4)
    t1 = min(_rewrite_cpu_seconds(small) for _ in range(3))
    t4 = min(_rewrite_cpu_seconds(large) for _ in range(3))
    assert t4 / max(t1, 1e-3) < 8, f"{len(small)} bytes took {t1:.3f}s, {len(large)} bytes {t4:.3f}s: not linear"
