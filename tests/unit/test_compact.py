"""Remote compaction: the legacy compact request sent as a triggered stream, its JSON answer, and what a
`compaction` output item becomes on every client route."""

import json

import pytest
from openai.types.responses import ResponseCompactionItem

from cliproxy.addons.translate import anthropic_stream as AS
from cliproxy.addons.translate import chat, compact, errors, registry, responses
from cliproxy.addons.translate.codex_body import Settings, service_tier
from cliproxy.addons.translate.stream import collect
from tests.fakes.codex_backend import turn
from tests.unit.test_anthropic_translate import events as anthropic_events
from tests.unit.test_chat_translate import frames, run, wire

S = Settings()
HISTORY = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
]
TRIGGER = {"type": "compaction_trigger"}
COMPACTED = turn(response_id="resp_fake0001").reasoning("Compacting.").compaction("gAAAAencrypted").events()


@pytest.mark.parametrize(
    "body,trailing",
    [
        ({"model": "gpt-5.5", "input": HISTORY}, HISTORY[-1]),  # the CLI's v1 body: no stream field
        ({"model": "gpt-5.5", "input": HISTORY, "stream": True}, HISTORY[-1]),  # a stream request still gets JSON
        ({"model": "gpt-5.5", "input": [*HISTORY, TRIGGER]}, HISTORY[-1]),  # a trigger sent already: kept once
        ({"model": "gpt-5.5", "input": "summarise this"}, None),  # string input becomes a message
    ],
)
def test_compact_request_is_a_stream_ending_in_one_trigger(body, trailing):
    call = registry.APIS["compact"].to_codex(body, S, {})
    b = call.body
    assert call.stream is False  # the client gets JSON
    assert b["stream"] is True and b["store"] is False and b["model"] == "gpt-5.5"
    assert b["input"][-1] == TRIGGER and sum(1 for i in b["input"] if i.get("type") == "compaction_trigger") == 1
    if trailing is not None:
        assert b["input"][-2] == trailing


def test_codex_cli_compact_body_passes_as_it_is_with_the_trigger():
    body = {
        "model": "gpt-6.1-sol",
        "input": HISTORY,
        "instructions": "You are Codex.",
        "tools": [],
        "parallel_tool_calls": False,
        "reasoning": {"effort": "high", "context": "all_turns"},
        "text": {"verbosity": "low"},
    }
    call = registry.APIS["codex_compact"].to_codex(body, S, {})
    assert call.stream is False and call.model == "gpt-6.1-sol" and call.effort == "high"
    assert call.body == {**body, "input": [*HISTORY, TRIGGER], "store": False, "stream": True}


@pytest.mark.parametrize(
    "route,body,param",
    [
        ("compact", [], None),
        ("compact", {"model": "gpt-5.5"}, "input"),
        ("compact", {"input": HISTORY}, "model"),
        ("codex_compact", {"input": HISTORY}, "model"),
        ("codex_compact", {"model": "gpt-5.5", "input": "text"}, "input"),
    ],
)
def test_bad_compact_requests_are_400(route, body, param):
    with pytest.raises(errors.ProxyError) as exc:
        registry.APIS[route].to_codex(body, S, {})
    assert exc.value.status == 400 and exc.value.param == param


def test_compact_answer_holds_the_one_compaction_item():
    ans = registry.aggregate("compact", collect(wire(COMPACTED)), "gpt-5.5", {})
    assert ans["object"] == "response.compaction" and ans["id"] == "resp_fake0001"
    assert ans["output"] == [{"id": "cmp_0001", "type": "compaction", "encrypted_content": "gAAAAencrypted"}]
    assert ans["usage"]["total_tokens"] == 59 and ans["created_at"] == 1_760_000_000
    ResponseCompactionItem.model_validate(ans["output"][0])  # the OpenAI SDK's own type for the item


@pytest.mark.parametrize(
    "events,count",
    [
        (turn().text("I will not compact.").events(), 0),
        (turn().compaction("a").compaction("b").events(), 2),
    ],
)
def test_compact_answer_without_exactly_one_item_is_a_502(events, count):
    with pytest.raises(errors.ProxyError) as exc:
        compact.answer(collect(wire(events)))
    assert exc.value.status == 502 and exc.value.code == "compaction_failed" and f"with {count} compaction" in exc.value.message


def test_responses_route_keeps_the_compaction_item_in_stream_and_json():
    """v2: the Codex CLI needs exactly one `response.output_item.done` with a compaction item."""
    out = b"".join(run(responses.ResponsesStream(), wire(COMPACTED), cuts=range(7, 4000, 97))).decode()
    done = [json.loads(f.split("data: ", 1)[1]) for f in out.split("\n\n") if f.startswith("event: response.output_item.done")]
    assert [d["item"]["type"] for d in done] == ["reasoning", "compaction"]
    assert done[1]["item"]["encrypted_content"] == "gAAAAencrypted"
    final = json.loads(out.split("event: response.completed\ndata: ", 1)[1].split("\n\n")[0])
    assert [i["type"] for i in final["response"]["output"]] == ["reasoning", "compaction"]
    assert [i["type"] for i in registry.aggregate("responses", collect(wire(COMPACTED)), "gpt-5.5", {})["output"]] == [
        "reasoning",
        "compaction",
    ]


def test_chat_and_anthropic_answers_leave_a_compaction_item_out():
    """Their clients cannot send a trigger (their messages never become one), so a compaction item has no
    meaning for them: it is left out, and the rest of the answer is intact."""
    events = turn().compaction().text("Still here.").events()
    chunks = [json.loads(f) for f in frames(run(chat.ChatStream("gpt-5.5"), wire(events))) if f != "[DONE]"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Still here."
    assert chat.completion_from(collect(wire(events)), "gpt-5.5")["choices"][0]["message"]["content"] == "Still here."
    pairs = anthropic_events(run(AS.MessagesStream("gpt-5.5"), wire(events)))
    assert [d["content_block"]["type"] for n, d in pairs if n == "content_block_start"] == ["text"]
    assert [b["type"] for b in AS.message_from(collect(wire(events)), "gpt-5.5")["content"]] == ["text"]


@pytest.mark.parametrize(
    "asked,sent",
    [
        ("fast", "priority"),
        ("priority", "priority"),
        ("FAST", "priority"),
        ("ultrafast", "ultrafast"),
        ("auto", None),
        ("default", None),
        ("flex", None),
        (None, None),
        (3, None),
    ],
)
def test_service_tiers(asked, sent):
    assert service_tier(asked) == sent
    body = {"model": "gpt-5.5", "input": "hi", **({"service_tier": asked} if asked is not None else {})}
    assert responses.request_to_codex(body, S).body.get("service_tier") == sent
    assert (
        chat.request_to_codex({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "service_tier": asked}, S).body.get(
            "service_tier"
        )
        == sent
    )
