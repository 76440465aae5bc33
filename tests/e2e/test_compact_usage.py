"""Remote compaction, the Codex usage endpoint and service tiers through the real proxy."""

import json
import ssl
import time

import httpx
import openai
import pytest
from mitmproxy import io

from tests.conftest import CLIENT_KEY
from tests.fakes.codex_backend import PATH, QUOTA_HEADERS, sse, turn
from tests.proxyproc import start_proxy

HISTORY = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Remember the number 7."}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Noted: 7."}]},
]


def compaction_items(output):
    return [i for i in output if (i["type"] if isinstance(i, dict) else i.type) == "compaction"]


def test_compact_endpoint_answers_the_compaction_json(openai_client, backend):
    r = openai_client.responses.compact(model="gpt-5.5", input=HISTORY, instructions="Be brief.")
    assert r.object == "response.compaction" and r.id.startswith("resp_") and isinstance(r.created_at, int)
    assert [(i.type, i.encrypted_content) for i in r.output] == [("compaction", "gAAAAABfakeCompactedHistory==")]
    assert r.usage.total_tokens == 59
    got = backend.received[-1]
    assert got.method == "POST" and got.path.endswith(PATH)  # sent as a streamed /responses, not to /responses/compact
    body = got.json
    assert body["stream"] is True and body["store"] is False and body["instructions"] == "Be brief."
    assert body["input"][:2] == HISTORY and body["input"][2:] == [{"type": "compaction_trigger"}]


def test_backend_compact_path_on_the_base_url(proxy, backend):
    """The path a Codex provider whose base URL ends in /backend-api/codex would call (the CLI's own body)."""
    body = {
        "model": "gpt-5.5",
        "input": HISTORY,
        "instructions": "You are Codex.",
        "tools": [],
        "parallel_tool_calls": False,
        "reasoning": {"effort": "high"},
        "text": {"verbosity": "low"},
    }
    r = httpx.post(proxy.base_url + "/backend-api/codex/responses/compact", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert compaction_items(r.json()["output"]) == r.json()["output"] and len(r.json()["output"]) == 1
    assert backend.received[-1].json["input"][-1] == {"type": "compaction_trigger"}


def test_the_fake_backend_refuses_its_own_compact_path(backend):
    """As seen in 2026-08: which is why cliproxy never calls it."""
    r = httpx.post(backend.base_url + "/responses/compact", json={"model": "gpt-5.5", "input": HISTORY}, timeout=10)
    assert r.status_code == 404


def test_compact_without_a_compaction_item_is_a_clear_502(openai_client, backend):
    backend.replies.append(sse(turn().text("I summarised it in prose instead.").events()))
    with pytest.raises(openai.APIStatusError) as exc:
        openai_client.responses.compact(model="gpt-5.5", input=HISTORY)
    assert exc.value.status_code == 502 and exc.value.body["code"] == "compaction_failed"


@pytest.mark.parametrize("stream", [True, False])
def test_v2_trigger_through_responses_keeps_one_compaction_item(openai_client, backend, stream):
    """Remote compaction v2 (the Codex CLI's default): a normal Responses request ending in a trigger."""
    items = [*HISTORY, {"type": "compaction_trigger"}]
    if stream:
        events = list(openai_client.responses.create(model="gpt-5.5", input=items, stream=True))
        done = [e.item for e in events if e.type == "response.output_item.done"]
        assert [i.type for i in compaction_items(done)] == ["compaction"]
        assert compaction_items(done)[0].encrypted_content == "gAAAAABfakeCompactedHistory=="
        final = events[-1].response
    else:
        final = openai_client.responses.create(model="gpt-5.5", input=items)
    assert [(i.type, i.encrypted_content) for i in compaction_items(final.output)] == [("compaction", "gAAAAABfakeCompactedHistory==")]
    assert backend.received[-1].json["input"][-1] == {"type": "compaction_trigger"}


@pytest.mark.parametrize("path", ["/backend-api/wham/usage", "/api/codex/usage"])
def test_usage_endpoint_shows_the_quota_the_backend_reported(proxy, backend, path):
    openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0).responses.create(
        model="gpt-5.5", input="hi", prompt_cache_key="conv-usage-1"
    )
    assert backend.received[-1].path.endswith(PATH)  # the fake answers with QUOTA_HEADERS
    for headers, scope in (({"session-id": "conv-usage-1"}, "account"), ({}, "pool")):
        r = httpx.get(proxy.base_url + path, headers={"authorization": "Bearer whatever", **headers}, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["cliproxy_scope"] == scope and body["plan_type"] == "plus"
        primary, secondary = body["rate_limit"]["primary_window"], body["rate_limit"]["secondary_window"]
        assert primary["used_percent"] == round(float(QUOTA_HEADERS["x-codex-primary-used-percent"]))
        assert primary["limit_window_seconds"] == 300 * 60 and secondary["limit_window_seconds"] == 10080 * 60
        assert secondary["used_percent"] == 40
        assert abs(primary["reset_at"] - (time.time() + 9000)) < 60 and 8900 < primary["reset_after_seconds"] <= 9000
        assert body["rate_limit"]["allowed"] is True and body["rate_limit"]["limit_reached"] is False
        assert set(body) >= {"credits", "rate_limit_reset_credits", "additional_rate_limits"}
    assert len([r for r in backend.received if "usage" in r.path]) == 0  # answered locally


def test_usage_endpoint_through_chatgpt_with_pooling(tmp_path, proxy_home, backend_server, backend):
    def run(pooling):
        return start_proxy(
            tmp_path / f"p{pooling}",
            {
                "auth-dir": str(proxy_home / "auth"),
                "codex-base-url": backend_server.base_url,
                "oauth-issuer": "http://127.0.0.1:9",
                "codex-cli-pooling": pooling,
            },
        )

    proxy = run(True)
    try:
        with httpx.Client(proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30) as c:
            c.post(
                "https://chatgpt.com/backend-api/codex/responses",
                headers={"authorization": "Bearer cli-own"},
                json={"model": "gpt-5.5", "instructions": "", "store": False, "stream": True, "input": HISTORY},
            ).read()
            r = c.get(
                "https://chatgpt.com/backend-api/wham/usage", headers={"authorization": "Bearer cli-own", "chatgpt-account-id": "acct-own"}
            )
            assert r.status_code == 200 and r.json()["rate_limit"]["secondary_window"]["used_percent"] == 40
            compact = c.post(
                "https://chatgpt.com/backend-api/codex/responses/compact",
                headers={"authorization": "Bearer cli-own"},
                json={"model": "gpt-5.5", "instructions": "", "input": HISTORY},
            )
            assert compact.status_code == 200 and compact.json()["output"][0]["type"] == "compaction"
            assert backend.received[-1].path.endswith(PATH) and "cli-own" not in backend.received[-1].headers["authorization"]
    finally:
        proxy.stop()
    proxy = run(False)
    try:
        with httpx.Client(proxy=proxy.proxy_url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=30) as c:
            r = c.get("https://chatgpt.com/backend-api/wham/usage")
        assert r.status_code == 502  # left alone: forwarded to the real chatgpt.com, which this sandbox cannot reach
    finally:
        proxy.stop()


def test_fast_tier_is_sent_as_priority_and_the_comment_says_what_served(tmp_path, proxy_home, backend_server, backend):
    out = tmp_path / "flows.mitm"
    proxy = start_proxy(tmp_path / "p", {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_server.base_url}, "-w", str(out))
    try:
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        list(client.responses.create(model="gpt-5.5", input="hi", service_tier="fast", stream=True))
        assert backend.received[-1].json["service_tier"] == "priority"
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], service_tier="fast")
        assert backend.received[-1].json["service_tier"] == "priority"
        backend.replies.append(sse(turn().text("Served slower.").tier("default").events()))
        client.responses.create(model="gpt-5.5", input="hi", service_tier="priority")
    finally:
        proxy.stop()
    with out.open("rb") as fh:
        comments = [f.comment for f in io.FlowReader(fh).stream()]
    assert len(comments) == 3
    assert " · tier priority · " in comments[0] and " · tier priority · " in comments[1]
    assert "tier" not in comments[2]  # the backend's default served: nothing to point out


def test_the_fake_backend_refuses_fast_as_such(backend):
    """Which is what makes the test above prove the mapping."""
    r = httpx.post(
        backend.base_url + "/responses",
        json={"model": "gpt-5.5", "input": [], "instructions": "", "store": False, "stream": True, "service_tier": "fast"},
        timeout=10,
    )
    assert r.status_code == 400 and "service_tier" in json.dumps(r.json())
