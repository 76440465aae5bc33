"""Expansion of `/v1/responses` requests that name stored state, rule by rule (table-driven), on a real store."""

from __future__ import annotations

import pytest

from cliproxy.addons.store import expand
from cliproxy.addons.store.responses import Conversation, StoredResponse, owner_of
from cliproxy.addons.store.sqlite import FILE_NAME, SQLiteStore
from cliproxy.addons.translate.errors import ProxyError

A, B = owner_of(["sk-a"]), owner_of(["sk-b"])


def user(text: str, **kw) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}], **kw}


REASONING = {"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAA", "summary": [{"type": "summary_text", "text": "hmm"}]}
CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"}
ANSWER = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]}
FIRST = user("first", id="msg_u1")
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / FILE_NAME)
    s.put_response(StoredResponse("resp_text", A, instructions="Be brief.", input=[FIRST], new_input=1, output=[REASONING, ANSWER]))
    s.put_response(
        StoredResponse("resp_tool", A, instructions="Use tools.", input=[user("weather?", id="msg_u2")], new_input=1, output=[CALL])
    )
    s.put_response(StoredResponse("resp_private", A, store=False))
    s.create_conversation(Conversation("conv_1", A), [user("in conv", id="msg_c1")])
    yield s
    s.close()


CASES = [
    # (name, body, owner, expected input (item ids or texts) or error code, expected instructions)
    ("plain request is left as it is", {"input": "hi"}, A, ["hi"], None),
    (
        "previous: stored input + output + new",
        {"previous_response_id": "resp_text", "input": "next"},
        A,
        ["first", "rs_1", "msg_1", "next"],
        "Be brief.",
    ),
    (
        "previous: own instructions win",
        {"previous_response_id": "resp_text", "input": "next", "instructions": "Other."},
        A,
        ["first", "rs_1", "msg_1", "next"],
        "Other.",
    ),
    (
        "previous: history resent as well is not repeated",
        {"previous_response_id": "resp_text", "input": [FIRST, REASONING, ANSWER, user("next")]},
        A,
        ["first", "rs_1", "msg_1", "next"],
        "Be brief.",
    ),
    (
        "previous: items already in the context (by id) are dropped",
        {"previous_response_id": "resp_text", "input": [ANSWER, user("next")]},
        A,
        ["first", "rs_1", "msg_1", "next"],
        "Be brief.",
    ),
    (
        "previous: tool output alone follows its call",
        {"previous_response_id": "resp_tool", "input": [OUTPUT]},
        A,
        ["weather?", "fc_1", "call_1"],
        "Use tools.",
    ),
    ("orphan tool output gets its stored call back", {"input": [user("weather?"), OUTPUT]}, A, ["weather?", "fc_1", "call_1"], None),
    ("orphan of another key stays orphan", {"input": [user("weather?"), OUTPUT]}, B, ["weather?", "call_1"], None),
    (
        "item reference resolved",
        {"input": [{"type": "item_reference", "id": "rs_1"}, {"type": "item_reference", "id": "msg_1"}, user("go")]},
        A,
        ["rs_1", "msg_1", "go"],
        None,
    ),
    (
        "reasoning by id alone gets its content",
        {"input": [{"type": "reasoning", "id": "rs_1", "summary": []}, user("go")]},
        A,
        ["rs_1", "go"],
        None,
    ),
    (
        "unknown reasoning by id alone is left out",
        {"input": [{"type": "reasoning", "id": "rs_x", "summary": []}, user("go")]},
        A,
        ["go"],
        None,
    ),
    ("conversation items first", {"conversation": "conv_1", "input": "more"}, A, ["in conv", "more"], None),
    ("conversation as an object", {"conversation": {"id": "conv_1"}, "input": "more"}, A, ["in conv", "more"], None),
    ("unknown previous", {"previous_response_id": "resp_nope", "input": "x"}, A, "previous_response_not_found", None),
    ("another key's previous is unknown", {"previous_response_id": "resp_text", "input": "x"}, B, "previous_response_not_found", None),
    ("store:false previous is refused", {"previous_response_id": "resp_private", "input": "x"}, A, "previous_response_not_found", None),
    ("unknown item reference", {"input": [{"type": "item_reference", "id": "msg_nope"}]}, A, "item_not_found", None),
    ("another key's item reference", {"input": [{"type": "item_reference", "id": "rs_1"}]}, B, "item_not_found", None),
    ("unknown conversation", {"conversation": "conv_nope", "input": "x"}, A, "conversation_not_found", None),
    ("another key's conversation", {"conversation": "conv_1", "input": "x"}, B, "conversation_not_found", None),
]


def ident(item: dict) -> str:
    if item.get("type") == "message" and item.get("role") == "user":
        return item["content"][0]["text"]
    return item.get("id") or item.get("call_id")


@pytest.mark.parametrize("name,body,owner,expected,instructions", CASES, ids=[c[0] for c in CASES])
def test_expand(store, name, body, owner, expected, instructions):
    state = expand.state_of(body)
    if isinstance(expected, str):
        with pytest.raises(ProxyError) as err:
            expand.expand(body, owner, store, state)
        assert err.value.code == expected
        assert err.value.status == (404 if expected == "conversation_not_found" else 400)
        if name.startswith("store:false"):
            assert "store: false" in err.value.message
        return
    assert expand.needs_store(body, state) == (name != "plain request is left as it is")
    out, context = expand.expand(body, owner, store, state)
    assert [ident(i) for i in out["input"]] == expected
    assert out.get("instructions") == instructions
    assert "previous_response_id" not in out and "conversation" not in out
    assert 0 <= context <= len(out["input"])


def test_context_length_marks_the_new_items(store):
    body = {"previous_response_id": "resp_text", "input": "next"}
    out, context = expand.expand(body, A, store, expand.state_of(body))
    assert [ident(i) for i in out["input"][context:]] == ["next"]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"store": "yes"}, "store"),
        ({"previous_response_id": 5}, "previous_response_id"),
        ({"previous_response_id": ""}, "previous_response_id"),
        ({"conversation": 5}, "conversation"),
        ({"conversation": {"name": "x"}}, "conversation"),
        ({"conversation": "conv_1", "previous_response_id": "resp_1"}, "previous_response_id"),
    ],
)
def test_bad_state_fields(body, param):
    with pytest.raises(ProxyError) as err:
        expand.state_of(body)
    assert err.value.status == 400 and err.value.param == param


def test_state_defaults():
    assert expand.state_of({}) == expand.State(True, None, None)
    assert expand.state_of({"store": False}).store is False
    assert expand.state_of({"store": None}).store is True


def test_plain_drops_minted_ids_and_state_fields():
    minted = {"id": "msg_cp" + "0" * 40, **user("x")}
    out = expand.plain({"input": [minted, user("y", id="msg_theirs")], "store": True})
    assert out["input"] == [user("x"), user("y", id="msg_theirs")]
