"""The usage ledger through the real proxy: rows match the usage the SDKs received, `cliproxy usage` totals."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes.accounts import mint_account
from tests.proxyproc import start_proxy

USAGE_CMD = [sys.executable, "-m", "cliproxy.scripts.cli", "usage"]


@pytest.fixture(scope="module")
def ledger_proxy(tmp_path_factory, backend_server):
    home = tmp_path_factory.mktemp("ledger")
    mint_account(home / "auth")
    p = start_proxy(home, {"auth-dir": str(home / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9"})
    yield p, home / "auth"
    p.stop()


def ledger_rows(auth: Path, count: int, timeout: float = 10.0) -> list[dict]:
    """The ledger's rows once `count` are there (they are written off the request path, in batches)."""
    path = auth / ".cliproxy-state" / "usage.sqlite3"
    deadline = time.time() + timeout
    while True:
        rows: list[dict] = []
        if path.exists():
            db = sqlite3.connect(path)
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM usage ORDER BY t")]
            db.close()
        if len(rows) >= count or time.time() > deadline:
            return rows
        time.sleep(0.1)


def usage_json(auth: Path, *args: str) -> dict:
    out = subprocess.run([*USAGE_CMD, "--auth-dir", str(auth), "--json", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ledger_rows_match_what_the_sdks_were_told(ledger_proxy, backend):
    proxy, auth = ledger_proxy
    oa = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    an = anthropic.Anthropic(base_url=proxy.base_url, api_key="sk-other-client", max_retries=0)
    told = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}

    def add(inp: int, cached: int, out: int, reasoning: int) -> None:
        for k, v in zip(told, (inp, cached, out, reasoning), strict=True):
            told[k] += v

    c = oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    add(
        c.usage.prompt_tokens,
        c.usage.prompt_tokens_details.cached_tokens,
        c.usage.completion_tokens,
        c.usage.completion_tokens_details.reasoning_tokens,
    )
    stream = oa.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    u = [ch.usage for ch in stream if ch.usage][-1]
    add(u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens, u.completion_tokens_details.reasoning_tokens)
    r = oa.responses.create(model="gpt-5.5", input="hello", reasoning={"effort": "high"}, service_tier="priority")
    add(
        r.usage.input_tokens,
        r.usage.input_tokens_details.cached_tokens,
        r.usage.output_tokens,
        r.usage.output_tokens_details.reasoning_tokens,
    )
    m = an.messages.create(model="gpt-5.5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    # Anthropic counts cached input apart: the ledger's input is the upstream's (both together)
    add(m.usage.input_tokens + m.usage.cache_read_input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens, 0)
    oa.models.list()  # a local answer: no row

    rows = ledger_rows(auth, 4)
    assert len(rows) == 4
    assert [r["route"] for r in rows] == ["chat", "chat", "responses", "messages"]
    assert [r["format"] for r in rows] == ["openai", "openai", "openai", "anthropic"]
    for row in rows:
        assert row["account"] == "dev@example.com" and row["status"] == 200 and row["error"] is None and row["failovers"] == 0
        assert row["model"] == "gpt-5.5" and row["seconds"] >= row["ttfb"] >= 0
    assert rows[2]["effort"] == "high" and rows[2]["tier_asked"] == "priority" and rows[2]["tier_served"] == "priority"
    keys = {r["key"] for r in rows}
    assert len(keys) == 2 and all(k.startswith("key:") and len(k) == 20 for k in keys)
    assert not any(CLIENT_KEY in json.dumps(r) for r in rows)
    for k in told:  # reasoning: Anthropic is not told it; the ledger keeps the upstream's count
        assert sum(r[k] for r in rows) == told[k] + (rows[3]["reasoning_tokens"] if k == "reasoning_tokens" else 0), k

    report = usage_json(auth, "--since", "1h", "--by", "key")
    totals = report["totals"]
    assert totals["requests"] == 4 and totals["errors"] == 0
    assert {k: totals[k] for k in ("input_tokens", "cached_tokens", "output_tokens")} == {
        k: told[k] for k in ("input_tokens", "cached_tokens", "output_tokens")
    }
    assert sorted(r["requests"] for r in report["rows"]) == [1, 3] and {r["key"] for r in report["rows"]} == keys
    assert all(
        set(r) == {"key", "requests", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "image_tokens", "errors"}
        for r in report["rows"]
    )


def test_failed_requests_are_rows_with_their_error(ledger_proxy, backend):
    from tests.fakes.codex_backend import detail

    proxy, auth = ledger_proxy
    before = len(ledger_rows(auth, 0, timeout=0))
    backend.replies.append(detail(400, "Unsupported parameter: frobnicate"))
    oa = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    rows = ledger_rows(auth, before + 1)
    assert rows[-1]["status"] == 400 and "frobnicate" in rows[-1]["error"] and rows[-1]["input_tokens"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "expected a number and a unit"),
        (["--since", "0h"], "expected a number"),
        (["--by", "planet"], "invalid choice"),
    ],
)
def test_usage_refuses_bad_arguments_with_exit_2(tmp_path, args, message):
    out = subprocess.run([*USAGE_CMD, "--auth-dir", str(tmp_path), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_usage_without_a_ledger_is_all_zero(tmp_path):
    out = subprocess.run([*USAGE_CMD, "--auth-dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == {
        "totals": {
            "requests": 0,
            "input_tokens": 0,
            "cached_tokens": 0,
            "output_tokens": 0,
            "reasoning_tokens": 0,
            "image_tokens": 0,
            "errors": 0,
        },
        "rows": [],
    }


@pytest.mark.parametrize("native", [True, False], ids=["native", "responses_form"])
def test_image_requests_count_with_their_image_tokens_apart(ledger_proxy, backend, native):
    """images.generate through either upstream path, then a Responses request with the image tool: each is a
    row; the image tokens (input images + generated) are in their own column, and `cliproxy usage` sums them."""
    from tests.fakes import images as fake

    proxy, auth = ledger_proxy
    backend.images.native = native
    before = len(ledger_rows(auth, 0, timeout=0))
    oa = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    img = oa.images.generate(model="gpt-image-1.5", prompt="a red square", size="1024x1024")
    assert img.usage is not None
    told = img.usage.input_tokens_details.image_tokens + img.usage.output_tokens  # 40 + 272
    r = oa.responses.create(model="gpt-5.5", input="draw a red square", tools=[{"type": "image_generation"}])
    assert any(o.type == "image_generation_call" for o in r.output)
    rows = ledger_rows(auth, before + 2)[before:]
    assert [row["route"] for row in rows] == ["images_generations", "responses"]
    gen, tool = rows
    assert gen["image_tokens"] == told == 312 and gen["status"] == 200
    assert (gen["input_tokens"], gen["output_tokens"]) == (img.usage.input_tokens, img.usage.output_tokens)  # what the SDK was told
    assert tool["image_tokens"] == fake.IMAGE_USAGE["input_tokens_details"]["image_tokens"] + fake.IMAGE_USAGE["output_tokens"]
    assert (tool["input_tokens"], tool["output_tokens"]) == (r.usage.input_tokens, r.usage.output_tokens)  # the text model's, apart
    report = usage_json(auth, "--since", "1h", "--by", "model")
    assert report["totals"]["image_tokens"] == sum(row["image_tokens"] for row in ledger_rows(auth, before + 2))
    assert sum(row["image_tokens"] for row in report["rows"]) == report["totals"]["image_tokens"] >= 2 * 312
