"""Client-set limits the backend refuses, honoured by the real proxy: stop sequences and token limits end
the answer (and the upstream connection) with the SDKs; logprobs refused; backend errors keep param/code."""

import time

import openai
import pytest

from tests.fakes.codex_backend import JSONReply, sse, turn

#: a long answer, slow enough that the backend is still writing when the proxy has what it needs
TAIL = ["more text " * 3] * 40
DELAY = 0.05  # seconds between frames: the whole answer takes over 2 s


def stop_turn():
    return turn().text("Roses are red.\nEND" + "".join(TAIL), deltas=["Roses are ", "red.\nE", "N", "D"] + TAIL).events()


def long_turn():
    words = [f"word{n} " for n in range(60)]
    return turn().text("".join(words), deltas=words).events()


def wait_disconnect(backend, before: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while backend.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.02)
    return backend.disconnects > before


@pytest.mark.parametrize("stream", [True, False])
def test_chat_stop_ends_the_answer_and_the_upstream(openai_client, backend, stream):
    backend.replies.append(sse(stop_turn(), chunking="frames", delay=DELAY))
    before, t0 = backend.disconnects, time.monotonic()
    args = dict(model="gpt-5.5", messages=[{"role": "user", "content": "a poem"}], stop=["END"])
    if stream:
        chunks = list(openai_client.chat.completions.create(**args, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        ids = {c.id for c in chunks}
    else:
        r = openai_client.chat.completions.create(**args)
        text, reasons, ids = r.choices[0].message.content, [r.choices[0].finish_reason], {r.id}
    elapsed = time.monotonic() - t0
    assert text == "Roses are red.\n" and reasons == ["stop"]
    assert all(i.startswith("chatcmpl-") for i in ids)
    assert elapsed < 40 * DELAY / 2, f"the client waited {elapsed:.2f}s: the rest of the upstream answer was awaited"
    assert wait_disconnect(backend, before), "the backend never saw its connection closed"
    assert "stop" not in backend.received[-1].json


@pytest.mark.parametrize("stream", [True, False])
def test_chat_max_tokens_ends_with_length(openai_client, backend, stream):
    backend.replies.append(sse(long_turn(), chunking="frames", delay=DELAY / 5))
    args = dict(model="gpt-5.5", messages=[{"role": "user", "content": "count"}], max_completion_tokens=5)
    if stream:
        chunks = list(openai_client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
        usage = chunks[-1].usage
    else:
        r = openai_client.chat.completions.create(**args)
        text, reason, usage = r.choices[0].message.content, r.choices[0].finish_reason, r.usage
    assert reason == "length" and text and "word0 word1".startswith(text[:11]) and len(text) < 40
    assert 0 < usage.completion_tokens <= 5
    sent = backend.received[-1].json
    assert "max_completion_tokens" not in sent and "max_tokens" not in sent


def test_responses_max_output_tokens_ends_incomplete(openai_client, backend):
    backend.replies.append(sse(long_turn(), chunking="frames", delay=DELAY / 5))
    # (the SDK's `responses.stream` helper only finishes on `response.completed`, as against OpenAI itself)
    events = list(openai_client.responses.create(model="gpt-5.5", input="count", max_output_tokens=16, stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert final.status == "incomplete" and final.incomplete_details.reason == "max_output_tokens"
    assert final.output_text == "".join(deltas) and 0 < len(final.output_text) < 100
    backend.replies.append(sse(long_turn()))
    r = openai_client.responses.create(model="gpt-5.5", input="count", max_output_tokens=16)
    assert r.status == "incomplete" and r.output_text == final.output_text
    assert "max_output_tokens" not in backend.received[-1].json


@pytest.mark.parametrize("stream", [True, False])
def test_anthropic_stop_sequences_and_max_tokens(anthropic_client, backend, stream):
    backend.replies.append(sse(stop_turn(), chunking="frames", delay=DELAY))
    before = backend.disconnects
    args = dict(model="claude-sonnet-4-5", max_tokens=1024, messages=[{"role": "user", "content": "a poem"}], stop_sequences=["END"])
    if stream:
        with anthropic_client.messages.stream(**args) as s:
            text = "".join(s.text_stream)
            msg = s.get_final_message()
    else:
        msg = anthropic_client.messages.create(**args)
        text = msg.content[0].text
    assert text == "Roses are red.\n" and msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"
    assert wait_disconnect(backend, before)
    backend.replies.append(sse(long_turn()))
    msg = anthropic_client.messages.create(**{**args, "max_tokens": 4, "stop_sequences": []})
    assert msg.stop_reason == "max_tokens" and msg.stop_sequence is None and 0 < msg.usage.output_tokens <= 4


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "logprobs"),
        ("/v1/responses", {"model": "gpt-5.5", "input": "hi", "top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_logprobs_refused_alike(raw, backend, path, body, param):
    r = raw.post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert r.headers["x-request-id"].startswith("req_")
    assert not backend.received


def test_backend_errors_keep_param_and_code(openai_client, backend):
    backend.replies.append(
        JSONReply(
            400,
            {
                "error": {
                    "message": "Invalid 'input[0].content': too long.",
                    "type": "invalid_request_error",
                    "param": "input[0].content",
                    "code": "string_above_max_length",
                }
            },
            headers={"x-request-id": "req_upstream42"},
        )
    )
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    err = exc.value
    assert (err.param, err.code) == ("input[0].content", "string_above_max_length")
    assert err.response.headers["x-request-id"] == "req_upstream42"


def test_a_client_reading_to_the_end_gets_the_end_at_once(raw, backend):
    """curl-like: the body is read to its end. The proxy ends it at the stop sequence and closes the upstream,
    instead of holding the client until the backend has written the rest (over 2 s here)."""
    backend.replies.append(sse(stop_turn(), chunking="frames", delay=DELAY))
    before, t0 = backend.disconnects, time.monotonic()
    r = raw.post(
        "/v1/chat/completions",
        json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "a poem"}], "stop": "END", "stream": True},
    )
    elapsed = time.monotonic() - t0
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n") and '"finish_reason":"stop"' in r.text
    assert "Violets" not in r.text and "more text" not in r.text
    assert elapsed < 40 * DELAY / 2, f"the body ended after {elapsed:.2f}s, with the upstream's"
    assert wait_disconnect(backend, before, timeout=0.5)
    assert r.headers["x-request-id"] == "req_fake"  # the backend's own
