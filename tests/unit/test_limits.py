"""Client-set limits the backend refuses (stop sequences, token limits), honoured by the translators;
logprobs refused alike; upstream errors keep `param`/`code`; chat ids shaped `chatcmpl-…`."""

import json

import pytest
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cliproxy.addons.translate import anthropic as A
from cliproxy.addons.translate import chat, errors, registry, responses
from cliproxy.addons.translate.codex_body import Settings
from cliproxy.addons.translate.limits import Limiter
from cliproxy.addons.translate.stream import collect
from tests.fakes.codex_backend import turn
from tests.unit.test_chat_translate import frames, run, wire

S = Settings()


def feed(limiter: Limiter, deltas: list[str]) -> str:
    sent = ""
    for d in deltas:
        sent += limiter.text(d)
        if limiter.ended:
            return sent
    return sent + limiter.flush()


@pytest.mark.parametrize(
    "stop, deltas, sent, ended, seq",
    [
        (["END"], ["Hello ", "world"], "Hello world", None, None),
        (["END"], ["Hello E", "ND more"], "Hello ", "stop", "END"),
        (["END"], ["Hello E", "N", "D"], "Hello ", "stop", "END"),
        (["END"], ["Hello EN", "ough"], "Hello ENough", None, None),  # a false start is released
        (["END"], ["Hello EN"], "Hello EN", None, None),  # held text is flushed at the end of the item
        (["END"], ["END"], "", "stop", "END"),
        (["\n\n", "Human:"], ["a\n", "\nb"], "a", "stop", "\n\n"),
        (["\n\n", "Human:"], ["hi Hu", "man: x"], "hi ", "stop", "Human:"),
        (["ab", "b"], ["xab"], "x", "stop", "ab"),  # the earliest match wins
        (["é!"], ["caf", "é", "!"], "caf", "stop", "é!"),
    ],
)
def test_stop_sequences_across_delta_boundaries(stop, deltas, sent, ended, seq):
    lim = Limiter(stop)
    assert feed(lim, deltas) == sent
    assert (lim.ended, lim.stop_sequence) == (ended, seq)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abEND \n", max_size=40), st.lists(st.integers(0, 40), max_size=8))
def test_stop_sequence_found_however_the_text_is_cut(text, cuts):
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    deltas = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    lim = Limiter(["END", "\n\n"])
    expected = min((text.split(s)[0] for s in ("END", "\n\n") if s in text), key=len, default=text)
    assert feed(lim, deltas) == expected
    assert lim.ended == ("stop" if "END" in text or "\n\n" in text else None)


@pytest.mark.parametrize(
    "max_tokens, deltas",
    [
        (1, ["Hello world, this is long"]),
        (3, ["Hello ", "world, ", "this is ", "a longer answer than three tokens."]),
        (10, ["word " * 30]),
    ],
)
def test_token_limit_cuts_at_the_estimate(max_tokens, deltas):
    lim = Limiter([], max_tokens)
    sent = feed(lim, deltas)
    full = "".join(deltas)
    assert lim.ended == "length" and full.startswith(sent) and len(sent) < len(full)
    assert A.text_tokens(sent) <= max_tokens < A.text_tokens(full[: len(sent) + 1])
    assert lim.usage()["output_tokens"] <= max_tokens


def test_token_limit_not_reached_leaves_the_answer_alone():
    lim = Limiter([], 100)
    assert feed(lim, ["short ", "answer"]) == "short answer" and lim.ended is None


def test_the_limit_beats_a_later_stop_sequence():
    lim = Limiter(["STOP"], 2)
    sent = feed(lim, ["a fairly long text before STOP"])
    assert sent == feed(Limiter([], 2), ["a fairly long text before"]) and 0 < len(sent) < 12
    assert lim.ended == "length" and lim.stop_sequence is None


# -- requests --------------------------------------------------------------------------------


def chat_req(**kw):
    return {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], **kw}


@pytest.mark.parametrize(
    "kw, limits_",
    [
        ({}, None),
        ({"stop": "END"}, {"stop": ["END"], "max_tokens": None}),
        ({"stop": ["a", "b", ""], "max_tokens": 5}, {"stop": ["a", "b"], "max_tokens": 5}),
        ({"max_tokens": 9, "max_completion_tokens": 7}, {"stop": [], "max_tokens": 7}),
        ({"stop": None, "max_tokens": None}, None),
    ],
)
def test_chat_limits_travel_in_options_not_upstream(kw, limits_):
    call = chat.request_to_codex(chat_req(**kw), S)
    got = call.options.get("limits")
    assert (got is None) == (limits_ is None)
    if limits_:
        assert {k: got[k] for k in ("stop", "max_tokens")} == limits_ and got["input_tokens"] > 0
    for gone in ("stop", "max_tokens", "max_completion_tokens"):
        assert gone not in call.body


@pytest.mark.parametrize(
    "translate, body, param",
    [
        (chat.request_to_codex, chat_req(stop=["1", "2", "3", "4", "5"]), "stop"),
        (chat.request_to_codex, chat_req(stop=[1]), "stop"),
        (chat.request_to_codex, chat_req(max_tokens=0), "max_tokens"),
        (chat.request_to_codex, chat_req(max_completion_tokens="9"), "max_completion_tokens"),
        (chat.request_to_codex, chat_req(logprobs=True), "logprobs"),
        (chat.request_to_codex, chat_req(top_logprobs=3), "top_logprobs"),
        (responses.request_to_codex, {"model": "gpt-5.5", "input": "hi", "top_logprobs": 3}, "top_logprobs"),
        (responses.request_to_codex, {"model": "gpt-5.5", "input": "hi", "include": ["message.output_text.logprobs"]}, "include"),
        (responses.request_to_codex, {"model": "gpt-5.5", "input": "hi", "max_output_tokens": -1}, "max_output_tokens"),
        (
            A.request_to_codex,
            {"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stop_sequences": "x"},
            "stop_sequences",
        ),
    ],
)
def test_bad_limits_and_logprobs_are_400_naming_the_param(translate, body, param):
    with pytest.raises(errors.ProxyError) as exc:
        translate(body, S)
    assert exc.value.status == 400 and exc.value.param == param
    assert errors.openai_body(exc.value)["error"]["param"] == param


def test_unset_logprobs_and_limits_are_dropped_on_responses():
    call = responses.request_to_codex({"model": "gpt-5.5", "input": "hi", "top_logprobs": 0, "max_output_tokens": 50}, S)
    assert "top_logprobs" not in call.body and "max_output_tokens" not in call.body
    assert call.options["limits"]["max_tokens"] == 50


# -- answers ---------------------------------------------------------------------------------

STOP_TURN = turn().reasoning("Hmm.").text("Roses are red.\nEND\nViolets", deltas=["Roses are ", "red.\nE", "N", "D\nViol", "ets"]).events()
LONG_TURN = (
    turn()
    .text(
        "one two three four five six seven eight nine ten eleven twelve",
        deltas=["one two ", "three four ", "five six ", "seven eight ", "nine ten ", "eleven twelve"],
    )
    .events()
)


def opts(route, body):
    return registry.APIS[route].to_codex(body, S, {}).options


@pytest.mark.parametrize("cut", [None, 1, 7, 113, 300])
def test_chat_stream_ends_at_the_stop_sequence(cut):
    options = opts("chat", chat_req(stop=["END"], stream=True, stream_options={"include_usage": True}))
    translator = registry.stream_translator("chat", "gpt-5.5", options)
    data = wire(STOP_TURN)
    out = run(translator, data, range(cut, len(data), cut) if cut else ())
    chunks = [ChatCompletionChunk.model_validate_json(f) for f in frames(out)[:-1]]
    assert frames(out)[-1] == "[DONE]"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Roses are red.\n"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[0].id.startswith("chatcmpl-") and len({c.id for c in chunks}) == 1
    assert chunks[-1].usage.completion_tokens == round(A.text_tokens("Roses are red.\n") + 0.5)
    assert translator.collector.ended_locally == "stop" and translator.finished


def test_chat_stream_and_aggregate_end_at_the_token_limit():
    options = opts("chat", chat_req(max_completion_tokens=4, stream=True))
    translator = registry.stream_translator("chat", "gpt-5.5", options)
    out = run(translator, wire(LONG_TURN))
    chunks = [ChatCompletionChunk.model_validate_json(f) for f in frames(out)[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "one two three four five six seven eight".startswith(text) and 0 < len(text) < 30
    assert chunks[-1].choices[0].finish_reason == "length"
    done = ChatCompletion.model_validate(registry.aggregate("chat", collect(wire(LONG_TURN), options["limits"]), "gpt-5.5", options))
    assert done.choices[0].message.content == text and done.choices[0].finish_reason == "length"
    assert done.id.startswith("chatcmpl-") and done.usage.completion_tokens <= 4


def test_responses_stream_ends_incomplete_at_max_output_tokens():
    options = opts("responses", {"model": "gpt-5.5", "input": "hi", "max_output_tokens": 4, "stream": True})
    translator = registry.stream_translator("responses", "gpt-5.5", options)
    out = b"".join(run(translator, wire(LONG_TURN), range(5, 4000, 5))).decode()
    events = [json.loads(f.split("data: ", 1)[1]) for f in out.split("\n\n") if f]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert output_text(last["response"]) == text and 0 < len(text) < 30
    assert [e["type"] for e in events[-4:-1]] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    seqs = [e["sequence_number"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    final = registry.aggregate("responses", collect(wire(LONG_TURN), options["limits"]), "gpt-5.5", options)
    assert final["status"] == "incomplete" and output_text(final) == text


def output_text(response):
    return "".join(p["text"] for i in response["output"] if i["type"] == "message" for p in i["content"] if p["type"] == "output_text")


def anthropic_req(**kw):
    return {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **kw}


def test_anthropic_stream_and_message_end_at_a_stop_sequence():
    options = opts("messages", anthropic_req(stop_sequences=["END"], stream=True))
    translator = registry.stream_translator("messages", "gpt-5.5", options)
    out = b"".join(run(translator, wire(STOP_TURN), range(3, 5000, 3))).decode()
    events = [json.loads(f.split("data: ", 1)[1]) for f in out.split("\n\n") if f]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "Roses are red.\n"
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert events[-1]["type"] == "message_stop"
    msg = Message.model_validate(registry.aggregate("messages", collect(wire(STOP_TURN), options["limits"]), "gpt-5.5", options))
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"
    assert [b.text for b in msg.content if b.type == "text"] == ["Roses are red.\n"]


def test_anthropic_max_tokens_ends_with_max_tokens():
    options = opts("messages", anthropic_req(max_tokens=3))
    msg = Message.model_validate(registry.aggregate("messages", collect(wire(LONG_TURN), options["limits"]), "gpt-5.5", options))
    assert msg.stop_reason == "max_tokens" and msg.stop_sequence is None
    assert 0 < len(msg.content[0].text) < 20 and msg.usage.output_tokens <= 3


def test_answers_under_the_limits_are_untouched():
    options = opts("chat", chat_req(stop=["ZZZ"], max_tokens=1000))
    done = registry.aggregate("chat", collect(wire(STOP_TURN), options["limits"]), "gpt-5.5", options)
    assert done["choices"][0]["message"]["content"] == "Roses are red.\nEND\nViolets"
    assert done["choices"][0]["finish_reason"] == "stop" and done["usage"]["completion_tokens"] == 17  # the backend's own usage


# -- ids and errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "upstream, expected",
    [
        ("resp_abc123", "chatcmpl-abc123"),
        ("chatcmpl-xyz", "chatcmpl-xyz"),
        ("other", "chatcmpl-other"),
    ],
)
def test_completion_ids(upstream, expected):
    assert chat.completion_id(upstream) == expected


def test_completion_id_without_upstream_id():
    a, b = chat.completion_id(None), chat.completion_id("")
    assert a.startswith("chatcmpl-") and b.startswith("chatcmpl-") and a != b


@pytest.mark.parametrize(
    "status, body, param, code",
    [
        (400, {"detail": "Unsupported parameter: max_output_tokens"}, "max_output_tokens", "unsupported_parameter"),
        (
            400,
            {"error": {"message": "Invalid value", "type": "invalid_request_error", "param": "input[3].content", "code": "invalid_value"}},
            "input[3].content",
            "invalid_value",
        ),
        (
            400,
            {"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}},
            None,
            "context_length_exceeded",
        ),
    ],
)
def test_upstream_errors_keep_param_and_code(status, body, param, code):
    err = errors.from_upstream_response(status, json.dumps(body).encode())
    assert (err.param, err.code) == (param, code)
    assert errors.openai_body(err)["error"]["param"] == param and errors.openai_body(err)["error"]["code"] == code


def test_stream_failures_keep_param_and_code():
    flat = {"type": "error", "code": "invalid_value", "message": "bad tool", "param": "tools[0].name"}
    nested = {"type": "response.failed", "response": {"error": {"code": "invalid_prompt", "message": "no", "param": "input"}}}
    assert (errors.from_stream_failure(flat).param, errors.from_stream_failure(flat).code) == ("tools[0].name", "invalid_value")
    assert (errors.from_stream_failure(nested).param, errors.from_stream_failure(nested).code) == ("input", "invalid_prompt")
    frame = responses.error_event(errors.from_stream_failure(flat), 3)
    assert json.loads(frame.split(b"data: ", 1)[1])["param"] == "tools[0].name"


# -- CORS and request ids (core.cors, config) ------------------------------------------------

from cliproxy.addons.core import config as configfile  # noqa: E402
from cliproxy.addons.core import cors  # noqa: E402
from cliproxy.addons.core.routes import classify  # noqa: E402
from cliproxy.addons.core.validate import ConfigError  # noqa: E402


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ()),
        ([], ()),
        (["http://localhost:3000", "https://App.example.com/"], ("http://localhost:3000", "https://app.example.com")),
        (["chrome-extension://abcdef", "http://[::1]:5173"], ("chrome-extension://abcdef", "http://[::1]:5173")),
    ],
)
def test_cors_origins_config(value, expected):
    assert configfile.parse({"cors-origins": value} if value is not None else {}).cors_origins == expected


@pytest.mark.parametrize(
    "value, says",
    [
        (["*"], "every web page"),
        (["null"], "every sandboxed frame"),
        (["http://localhost:3000/app"], "no path"),
        ("http://localhost:3000", "a list of origins"),
        ([3000], "an origin string"),
    ],
)
def test_bad_cors_origins_are_refused_naming_the_key(value, says):
    with pytest.raises(ConfigError) as exc:
        configfile.parse({"cors-origins": value})
    assert "cors-origins" in str(exc.value) and says in str(exc.value)


LISTED = ("http://localhost:3000",)


@pytest.mark.parametrize(
    "origin, asked, expected",
    [
        (None, None, {"allow": "GET, POST, OPTIONS"}),
        ("https://evil.example", "authorization", {"allow": "GET, POST, OPTIONS"}),
        (
            "http://localhost:3000",
            "authorization, content-type, x-stainless-os",
            {
                "allow": "GET, POST, OPTIONS",
                "access-control-allow-origin": "http://localhost:3000",
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": "authorization, content-type, x-stainless-os",
                "access-control-max-age": "7200",
                "vary": "origin",
            },
        ),
        (
            "http://localhost:3000",
            "bad header\r\nx: y",
            {
                "allow": "GET, POST, OPTIONS",
                "access-control-allow-origin": "http://localhost:3000",
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": cors.DEFAULT_HEADERS,
                "access-control-max-age": "7200",
                "vary": "origin",
            },
        ),
    ],
)
def test_preflight_headers(origin, asked, expected):
    assert cors.preflight_headers(origin, asked, LISTED) == expected


@pytest.mark.parametrize(
    "origin, fetch_site, own, refused",
    [
        (None, None, None, False),  # SDKs and CLIs
        (None, "none", None, False),  # a typed URL
        (None, "same-origin", None, False),
        (None, "cross-site", None, True),
        (None, "Same-Site", None, True),
        ("http://localhost:3000", "cross-site", None, False),  # listed
        ("http://LOCALHOST:3000/", None, None, False),
        ("http://localhost:3001", None, None, True),
        ("https://evil.example", "cross-site", None, True),
        ("null", None, None, True),  # sandboxed frames, file:// pages: never listed
        ("", None, None, True),
        ("http://127.0.0.1:8317", "same-origin", None, True),  # the base URL's own origin: a DNS-rebinding page
        ("https://chatgpt.com", "same-origin", "https://chatgpt.com", False),  # an intercepted site's own page
        ("https://evil.example", "cross-site", "https://chatgpt.com", True),
    ],
)
def test_web_page_refusal(origin, fetch_site, own, refused):
    reason = cors.refusal(origin, fetch_site, LISTED, own)
    assert (reason is not None) == refused
    if refused:
        assert "cors-origins" in reason


@pytest.mark.parametrize(
    "scheme, host, port, expected",
    [
        ("https", "api.openai.com", 443, "https://api.openai.com"),
        ("http", "Example.com", 8080, "http://example.com:8080"),
        ("http", "::1", 80, "http://[::1]"),
    ],
)
def test_origin_of(scheme, host, port, expected):
    assert cors.origin_of(scheme, host, port) == expected


def test_answer_headers_only_for_listed_origins():
    assert cors.answer_headers("http://localhost:3000", LISTED)["access-control-allow-origin"] == "http://localhost:3000"
    assert cors.answer_headers("http://localhost:3001", LISTED) == {} and cors.answer_headers(None, LISTED) == {}
    assert cors.request_id().startswith("req_") and cors.request_id() != cors.request_id()


@pytest.mark.parametrize(
    "host, path, reverse, expected",
    [
        ("cliproxy.invalid", "/v1/chat/completions", True, "options"),
        ("cliproxy.invalid", "/v1/messages", True, "options"),
        ("api.openai.com", "/v1/responses", False, "options"),
        ("cliproxy.invalid", "/api/provider/openai/v1/chat/completions", True, "amp_provider"),
        ("cliproxy.invalid", "/threads/T-1", True, "amp_proxy"),
    ],
)
def test_options_route(host, path, reverse, expected):
    assert classify(host, path, "OPTIONS", reverse_listener=reverse, anthropic_client=False).name == expected


@pytest.mark.parametrize(
    "stop,max_tokens,held,deltas",
    [
        ([], None, "", ["Hello", " world", ""]),
        ([], 3, "", ["Hello", " world, and more", "x"]),  # the budget runs out: take() declines, text() cuts
        (["END"], None, "", ["Hello"]),  # stop sequences are watched by text() only
        ([], 100, "x", ["Hello"]),
    ],
)
def test_take_releases_only_what_text_would_release_whole(stop, max_tokens, held, deltas):
    taken, reference = Limiter(list(stop), max_tokens, 5), Limiter(list(stop), max_tokens, 5)
    taken.held = reference.held = held
    for delta in deltas:
        before = (taken.used, list(taken.item_text), taken.held, taken.ended)
        if taken.take(delta):
            assert reference.text(delta) == delta
            assert (taken.used, taken.item_text, taken.held, taken.ended) == (
                reference.used,
                reference.item_text,
                reference.held,
                reference.ended,
            )
        else:
            assert (taken.used, taken.item_text, taken.held, taken.ended) == before  # nothing booked
            assert stop or held or max_tokens is not None
            taken.text(delta), reference.text(delta)  # both go the general way
