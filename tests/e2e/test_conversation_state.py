"""Conversation state over HTTP through the real proxy: `previous_response_id` chains, stored responses
(retrieve, input items, delete), item references, the Conversations API, owners kept apart by client
key, and two proxy processes sharing one store. The fake backend keeps nothing, like the real one:
what it receives must be the full, expanded input."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes.codex_backend import sse, turn
from tests.proxyproc import Proxy, start_proxy

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def texts(items: list[dict]) -> list[str]:
    """A readable trace of an input: user texts, then output item types."""
    out = []
    for i in items:
        if i.get("role") == "user":
            c = i["content"]
            out.append(c if isinstance(c, str) else "".join(p.get("text", "") for p in c))
        else:
            out.append(i.get("type"))
    return out


def create(client: openai.OpenAI, stream: bool, **kw):
    """`responses.create`, streamed or not; returns the final response."""
    if not stream:
        return client.responses.create(model="gpt-5.5", **kw)
    final = None
    for ev in client.responses.create(model="gpt-5.5", stream=True, **kw):
        if ev.type == "response.completed":
            final = ev.response
    assert final is not None
    return final


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_three_turns_chained_then_retrieve_list_delete(openai_client, backend, stream):
    r1 = create(openai_client, stream, input="one", instructions="Be brief.")
    r2 = create(openai_client, stream, input="two", previous_response_id=r1.id)
    r3 = create(openai_client, stream, input=[{"role": "user", "content": "three"}], previous_response_id=r2.id)
    assert r3.output_text == "You said: three"
    sent = backend.received[-1].json
    assert texts(sent["input"]) == ["one", "reasoning", "message", "two", "reasoning", "message", "three"]
    assert sent["input"][1]["encrypted_content"] and sent["instructions"] == "Be brief."  # inherited
    assert "previous_response_id" not in sent and sent["store"] is False
    assert len({r1.id, r2.id, r3.id}) == 3

    got = openai_client.responses.retrieve(r3.id)
    assert got.id == r3.id and got.output_text == "You said: three" and got.previous_response_id == r2.id
    assert got.usage.total_tokens == 59 and got.instructions == "Be brief."
    items = openai_client.responses.input_items.list(r3.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[0].text == "three"
    assert items.data[0].id.startswith("msg_")
    openai_client.responses.delete(r3.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(r3.id)
    with pytest.raises(openai.BadRequestError) as err:
        create(openai_client, stream, input="four", previous_response_id=r3.id)
    assert err.value.code == "previous_response_not_found"


def test_tool_call_follow_up_carries_only_the_output(openai_client, backend):
    backend.replies.append(sse(turn().reasoning("Need weather.").tool_call("get_weather", {"city": "Paris"}, call_id="call_p1").events()))
    r1 = openai_client.responses.create(model="gpt-5.5", input="Weather in Paris?", tools=TOOLS)
    call = next(i for i in r1.output if i.type == "function_call")
    backend.replies.append(sse(turn().text("Sunny in Paris.").events()))
    r2 = openai_client.responses.create(
        model="gpt-5.5",
        previous_response_id=r1.id,
        tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert r2.output_text == "Sunny in Paris."
    sent = backend.received[-1].json["input"]
    assert texts(sent) == ["Weather in Paris?", "reasoning", "function_call", "function_call_output"]
    assert sent[2]["call_id"] == sent[3]["call_id"] == "call_p1" and sent[2]["name"] == "get_weather"


def test_orphan_tool_output_gets_its_call_back_without_previous_id(openai_client, backend):
    """A client that keeps history itself but drops the call items (as some do) still sends a valid input."""
    backend.replies.append(sse(turn().tool_call("get_weather", {"city": "Rome"}, call_id="call_r1").events()))
    openai_client.responses.create(model="gpt-5.5", input="Weather in Rome?", tools=TOOLS)
    openai_client.responses.create(
        model="gpt-5.5",
        tools=TOOLS,
        input=[{"role": "user", "content": "Weather in Rome?"}, {"type": "function_call_output", "call_id": "call_r1", "output": "rain"}],
    )
    assert texts(backend.received[-1].json["input"]) == ["Weather in Rome?", "function_call", "function_call_output"]


def test_item_references_are_resolved(openai_client, backend):
    r1 = openai_client.responses.create(model="gpt-5.5", input="remember me")
    refs = [{"type": "item_reference", "id": i.id} for i in r1.output]
    r2 = openai_client.responses.create(
        model="gpt-5.5", input=[{"role": "user", "content": "remember me"}, *refs, {"role": "user", "content": "and now?"}]
    )
    assert r2.output_text == "You said: and now?"
    sent = backend.received[-1].json["input"]
    assert texts(sent) == ["remember me", "reasoning", "message", "and now?"]
    assert sent[1]["encrypted_content"] and sent[2]["content"][0]["text"] == "You said: remember me"
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.responses.create(model="gpt-5.5", input=[{"type": "item_reference", "id": "msg_unknown"}])
    assert err.value.code == "item_not_found"


def test_store_false_is_not_kept_and_chaining_from_it_says_why(openai_client, backend):
    r1 = openai_client.responses.create(model="gpt-5.5", input="secret", store=False)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(r1.id)
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.responses.create(model="gpt-5.5", input="more", previous_response_id=r1.id)
    assert err.value.code == "previous_response_not_found" and "store: false" in err.value.message


def test_unknown_and_bad_previous_ids(openai_client, backend):
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.responses.create(model="gpt-5.5", input="x", previous_response_id="resp_never")
    assert err.value.code == "previous_response_not_found" and err.value.param == "previous_response_id"
    assert err.value.body["message"] == "Previous response with id 'resp_never' not found."
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.responses.create(model="gpt-5.5", input="x", previous_response_id="resp_1", conversation="conv_1")
    assert err.value.code == "mutually_exclusive_parameters"
    assert backend.received == []


def test_another_client_key_does_not_see_the_chain(proxy: Proxy, backend):
    mine = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    theirs = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="sk-someone-else", max_retries=0)
    r1 = mine.responses.create(model="gpt-5.5", input="mine")
    with pytest.raises(openai.BadRequestError) as err:
        theirs.responses.create(model="gpt-5.5", input="steal", previous_response_id=r1.id)
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(r1.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(r1.id)
    assert mine.responses.retrieve(r1.id).id == r1.id


def test_conversations_api(openai_client, backend):
    conv = openai_client.conversations.create(items=[{"type": "message", "role": "user", "content": "I am Ada."}], metadata={"app": "t"})
    assert conv.id.startswith("conv_") and conv.metadata == {"app": "t"}
    r1 = openai_client.responses.create(model="gpt-5.5", conversation=conv.id, input="Who am I?")
    assert texts(backend.received[-1].json["input"]) == ["I am Ada.", "Who am I?"]
    openai_client.responses.create(model="gpt-5.5", conversation={"id": conv.id}, input="Again?")
    assert texts(backend.received[-1].json["input"]) == ["I am Ada.", "Who am I?", "reasoning", "message", "Again?"]
    assert openai_client.responses.retrieve(r1.id).conversation.id == conv.id

    items = list(openai_client.conversations.items.list(conv.id, order="asc"))
    assert [i.type for i in items] == ["message", "message", "reasoning", "message", "message", "reasoning", "message"]
    newest = openai_client.conversations.items.list(conv.id, limit=2)  # default order: newest first
    assert [i.type for i in newest.data] == ["message", "reasoning"] and newest.has_more
    added = openai_client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "note"}])
    assert len(added.data) == 1 and added.data[0].id
    assert openai_client.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id).id == added.data[0].id
    openai_client.conversations.items.delete(added.data[0].id, conversation_id=conv.id)
    assert len(list(openai_client.conversations.items.list(conv.id))) == 7
    assert openai_client.conversations.update(conv.id, metadata={"app": "u"}).metadata == {"app": "u"}
    assert openai_client.conversations.retrieve(conv.id).id == conv.id
    assert openai_client.conversations.delete(conv.id).deleted
    with pytest.raises(openai.NotFoundError):
        openai_client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model="gpt-5.5", conversation=conv.id, input="gone?")


def test_stored_routes_answer_bad_input_in_openai_format(raw, backend):
    for method, path, body, status in [
        ("GET", "/v1/responses/resp_x/input_items?limit=500", None, 400),
        ("GET", "/v1/conversations/conv_x/items?order=sideways", None, 400),
        ("POST", "/v1/conversations", b"[1]", 400),
        ("POST", "/v1/conversations", b"{not json", 400),
        ("POST", "/v1/conversations/conv_x/items", b"{}", 400),
        ("PUT", "/v1/conversations/conv_x", b"{}", 405),
        ("GET", "/v1/conversations/conv_x", None, 404),
        ("DELETE", "/v1/responses/resp_x", None, 404),
    ]:
        r = raw.request(method, path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (method, path, r.text)
        err = r.json()["error"]
        assert set(err) >= {"message", "type", "code", "param"} and err["message"]
    assert backend.received == []


def test_two_proxies_on_one_auth_dir_resolve_each_others_ids(proxy: Proxy, proxy_home, backend_server, backend, tmp_path):
    other = start_proxy(
        tmp_path / "second",
        {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"},
    )
    try:
        a = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        b = openai.OpenAI(base_url=other.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        r1 = a.responses.create(model="gpt-5.5", input="on A")
        r2 = b.responses.create(model="gpt-5.5", input="on B", previous_response_id=r1.id)
        assert texts(backend.received[-1].json["input"]) == ["on A", "reasoning", "message", "on B"]
        with a.responses.stream(model="gpt-5.5", input="back on A", previous_response_id=r2.id) as s:
            s.get_final_response()
        assert texts(backend.received[-1].json["input"])[-1] == "back on A" and len(backend.received[-1].json["input"]) == 7
        assert b.responses.retrieve(r1.id).output_text == "You said: on A"
    finally:
        other.stop()
    assert (proxy_home / "auth" / ".cliproxy-state" / "cliproxy.sqlite3").exists()


def test_store_survives_a_restart(tmp_path, proxy_home, backend_server, backend):
    cfg = {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"}
    p = start_proxy(tmp_path / "first", cfg)
    try:
        rid = httpx.post(p.base_url + "/v1/responses", json={"model": "gpt-5.5", "input": "before"}, timeout=30).json()["id"]
    finally:
        p.stop()
    p = start_proxy(tmp_path / "again", cfg)
    try:
        got = httpx.get(f"{p.base_url}/v1/responses/{rid}", timeout=30)
        assert got.status_code == 200 and json.loads(got.text)["output"][-1]["content"][0]["text"] == "You said: before"
    finally:
        p.stop()


def test_a_store_that_cannot_open_never_fails_a_plain_request(tmp_path, backend_server, backend):
    from tests.fakes.accounts import mint_account

    mint_account(tmp_path / "auth")
    (tmp_path / "auth" / ".cliproxy-state" / "cliproxy.sqlite3").mkdir(parents=True)  # not a file: cannot be opened
    p = start_proxy(
        tmp_path / "p",
        {"auth-dir": str(tmp_path / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"},
    )
    try:
        client = openai.OpenAI(base_url=p.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ids = [client.responses.create(model="gpt-5.5", input=f"plain {n}").id for n in range(3)]
        with pytest.raises(openai.InternalServerError) as err:
            client.responses.create(model="gpt-5.5", input="chained", previous_response_id=ids[0])
        assert err.value.status_code == 503 and err.value.code == "store_unavailable"
        p.wait_log("the response store failed")
        assert sum("the response store failed" in line for line in p.lines) == 1  # logged once, not per request
    finally:
        p.stop()


def test_a_damaged_store_file_is_moved_aside(tmp_path, backend_server, backend):
    from tests.fakes.accounts import mint_account

    mint_account(tmp_path / "auth")
    state = tmp_path / "auth" / ".cliproxy-state"
    state.mkdir(mode=0o700)
    (state / "cliproxy.sqlite3").write_bytes(b"definitely not SQLite\n" * 500)
    p = start_proxy(
        tmp_path / "p",
        {"auth-dir": str(tmp_path / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"},
    )
    try:
        client = openai.OpenAI(base_url=p.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        r1 = client.responses.create(model="gpt-5.5", input="first")
        client.responses.create(model="gpt-5.5", input="second", previous_response_id=r1.id)
        assert texts(backend.received[-1].json["input"]) == ["first", "reasoning", "message", "second"]
        assert list(state.glob("cliproxy.sqlite3.corrupt-*"))
    finally:
        p.stop()
