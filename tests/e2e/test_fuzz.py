"""Fuzzed request bodies through the real proxy: only 2xx/4xx, errors in the client's format, and no
connection to anything but the fake backend."""

import json
import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
MODEL = st.sampled_from(["gpt-5.5", "gpt-5.5(high)", "gpt-6-luna-low", "unknown-model", "", "claude-sonnet-4-5"]) | JSON
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_text", "image", "tool_result", "weird"])},
                             optional={"text": JSON, "image_url": JSON, "source": JSON, "content": JSON})
CONTENT = st.text(max_size=20) | st.lists(PART, max_size=3) | JSON
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "bogus"]) | JSON,
                                 "content": CONTENT}, optional={"tool_calls": JSON, "tool_call_id": JSON})
OPTIONAL = {"stream": st.booleans() | JSON, "tools": JSON | st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": JSON}), max_size=2),
            "tool_choice": JSON, "response_format": JSON, "reasoning_effort": JSON, "reasoning": JSON, "n": JSON,
            "temperature": JSON, "max_tokens": JSON, "thinking": JSON, "system": CONTENT, "instructions": JSON}
BODIES = {
    "/v1/chat/completions": st.fixed_dictionaries({"model": MODEL, "messages": st.lists(MESSAGE, max_size=3) | JSON}, optional=OPTIONAL),
    "/v1/responses": st.fixed_dictionaries({"model": MODEL, "input": st.text(max_size=20) | st.lists(MESSAGE, max_size=3) | JSON}, optional=OPTIONAL),
    "/v1/messages": st.fixed_dictionaries({"model": MODEL, "max_tokens": st.integers(1, 100) | JSON, "messages": st.lists(MESSAGE, max_size=3) | JSON},
                                           optional={k: v for k, v in OPTIONAL.items() if k != "max_tokens"}),
    "/v1/messages/count_tokens": st.fixed_dictionaries({"model": MODEL, "messages": st.lists(MESSAGE, max_size=3) | JSON}, optional=OPTIONAL),
}
RAW = st.binary(max_size=40) | st.just(b"") | JSON.map(lambda v: json.dumps(v).encode())


def check(r: httpx.Response, path: str) -> None:
    assert r.status_code < 500 and r.status_code not in (300, 301, 302), (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        if path.startswith("/v1/messages"):
            assert body["type"] == "error" and isinstance(body["error"]["message"], str) and body["error"]["type"]
        else:
            assert isinstance(body["error"]["message"], str) and body["error"]["type"]


@pytest.fixture(scope="module")
def fuzz_client(proxy):
    with httpx.Client(base_url=proxy.base_url, timeout=30) as c:
        yield c


@pytest.mark.parametrize("path", sorted(BODIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bodies_get_2xx_or_a_client_format_4xx(fuzz_client, backend, path, data):
    body = data.draw(BODIES[path] | RAW.map(lambda b: {"__raw__": b}))
    if "__raw__" in body:
        r = fuzz_client.post(path, content=body["__raw__"], headers={"content-type": "application/json"})
    else:
        r = fuzz_client.post(path, json=body)
    check(r, path)


def test_fuzzing_never_left_the_machine(proxy, backend_server):
    connects = re.findall(r"server connect (\S+)", proxy.log)
    assert connects, "the fuzz run should have reached the fake backend"
    assert set(connects) == {f"127.0.0.1:{backend_server.port}"}
