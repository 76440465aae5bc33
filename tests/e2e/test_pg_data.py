"""The usage ledger and the conversation store on PostgreSQL, through real mitmdump processes standing in
for three hosts on one database (a real server; the tests skip without one), real SDK clients, and
`cliproxy usage`. Each host keeps the same fake account in its own auth dir (accounts are not what
these tests share)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import yaml

from cliproxy.addons.store.pg_accounts import PgAccounts
from cliproxy.auth.store import load_accounts
from tests.conftest import CLIENT_KEY
from tests.e2e.test_conversation_state import texts
from tests.fakes.accounts import mint_account
from tests.proxyproc import Proxy, start_proxy

SECRET = "hunter2"  # a password in the DSN (the test server trusts everyone): it must never be shown
LEDGER_DOWN = "the usage ledger cannot be written"
LEDGER_BACK = "the usage ledger is written again"


def with_password(dsn: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")


def host_config(home: Path, backend_url: str, dsn: str) -> dict:
    mint_account(home / "auth")
    seed_accounts(dsn, home / "auth")
    return {"auth-dir": str(home / "auth"), "codex-base-url": backend_url, "oauth-issuer": "http://127.0.0.1:9", "store": dsn}


def seed_accounts(dsn: str, auth_dir: Path) -> None:
    """With `store` set the accounts live in the database too: the host's account goes there."""
    try:
        store = PgAccounts(dsn)
    except Exception:  # noqa: BLE001 - an unreachable database: the test itself says what it expects
        return
    try:
        for account in load_accounts(auth_dir):
            store.put(account.name, account.data)
    finally:
        store.close()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, pg_server, backend_server) -> Iterator[tuple[list[Proxy], str, Path]]:
    dsn = with_password(pg_server.new_database())
    base = tmp_path_factory.mktemp("pghosts")
    proxies: list[Proxy] = []
    try:
        for n in range(3):
            proxies.append(start_proxy(base / f"host{n}", host_config(base / f"host{n}", backend_server.base_url, dsn)))
        cli_config = base / "cli.yaml"
        cli_config.write_text(yaml.safe_dump({"auth-dir": str(base / "cli-auth"), "store": dsn}))
        yield proxies, dsn, cli_config
    finally:
        for p in proxies:
            p.stop()
    for p in proxies:
        assert SECRET not in p.log


def oai(p: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=p.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def usage(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cliproxy.scripts.cli", "usage", "--config", str(config), "--since", "1h", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def usage_json(config: Path, *args: str) -> dict:
    out = usage(config, "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_requests(config: Path, count: int, timeout: float = 20.0) -> dict:
    """`cliproxy usage --json` once it counts `count` requests (rows are written off the request path)."""
    deadline = time.time() + timeout
    while True:
        report = usage_json(config)
        if report["totals"]["requests"] >= count or time.time() > deadline:
            return report
        time.sleep(0.2)


def test_a_response_stored_through_one_host_resolves_on_the_others(hosts, backend):
    (one, two, three), _, _ = hosts
    r1 = oai(one).responses.create(model="gpt-5.5", input="on one", instructions="Be brief.")
    r2 = oai(two).responses.create(model="gpt-5.5", input="on two", previous_response_id=r1.id)
    assert texts(backend.received[-1].json["input"]) == ["on one", "reasoning", "message", "on two"]
    assert backend.received[-1].json["instructions"] == "Be brief."
    with oai(three).responses.stream(model="gpt-5.5", input="on three", previous_response_id=r2.id) as s:
        s.get_final_response()
    assert texts(backend.received[-1].json["input"]) == ["on one", "reasoning", "message", "on two", "reasoning", "message", "on three"]
    assert oai(three).responses.retrieve(r1.id).output_text == "You said: on one"
    # the Conversations API too: created on one host, added to on another, used on the third
    conv = httpx.post(one.base_url + "/v1/conversations", json={"items": [{"role": "user", "content": "first"}]}, timeout=30).json()
    assert (
        httpx.post(
            f"{two.base_url}/v1/conversations/{conv['id']}/items", json={"items": [{"role": "user", "content": "second"}]}
        ).status_code
        == 200
    )
    r = httpx.post(three.base_url + "/v1/responses", json={"model": "gpt-5.5", "input": "third", "conversation": conv["id"]}, timeout=30)
    assert r.status_code == 200 and texts(backend.received[-1].json["input"]) == ["first", "second", "third"]
    # another key does not see them, on any host
    other = openai.OpenAI(base_url=two.base_url + "/v1", api_key="sk-someone-else", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        other.responses.create(model="gpt-5.5", input="x", previous_response_id=r1.id)
    assert err.value.code == "previous_response_not_found"


def test_usage_sees_the_requests_of_every_host_and_matches_what_the_sdks_were_told(hosts, backend):
    proxies, _, config = hosts
    before = usage_json(config)["totals"]
    told = dict.fromkeys(("input_tokens", "cached_tokens", "output_tokens"), 0)
    for n, p in enumerate(proxies):
        c = oai(p).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"hi {n}"}])
        told["input_tokens"] += c.usage.prompt_tokens
        told["cached_tokens"] += c.usage.prompt_tokens_details.cached_tokens
        told["output_tokens"] += c.usage.completion_tokens
        r = oai(p).responses.create(model="gpt-5.5", input=f"hello {n}")
        told["input_tokens"] += r.usage.input_tokens
        told["cached_tokens"] += r.usage.input_tokens_details.cached_tokens
        told["output_tokens"] += r.usage.output_tokens
    m = anthropic.Anthropic(base_url=proxies[1].base_url, api_key=CLIENT_KEY, max_retries=0).messages.create(
        model="gpt-5.5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    told["input_tokens"] += m.usage.input_tokens + m.usage.cache_read_input_tokens  # the ledger counts cached input within input
    told["cached_tokens"] += m.usage.cache_read_input_tokens
    told["output_tokens"] += m.usage.output_tokens

    after = wait_requests(config, before["requests"] + 7)["totals"]
    assert after["requests"] == before["requests"] + 7 and after["errors"] == before["errors"]
    assert {k: after[k] - before[k] for k in told} == told
    by_key = usage_json(config, "--by", "key")["rows"]
    assert sum(r["requests"] for r in by_key) == after["requests"] and by_key[0]["key"].startswith("key:")
    assert by_key[0]["requests"] >= 7 and not any(CLIENT_KEY in r["key"] for r in by_key)
    table = usage(config, "--by", "account")
    assert table.returncode == 0 and "Usage in the last 1h" in table.stdout and SECRET not in table.stdout
    assert [r["account"] for r in usage_json(config, "--by", "account")["rows"]] == ["dev@example.com"]
    for p in proxies:  # the status page of every host reads the shared ledger too
        page = httpx.get(p.base_url + "/cliproxy/status.json?range=1h", timeout=30).json()
        assert page["ledger"] and page["totals"]["requests"] == after["requests"]


def test_database_stopped_mid_run_requests_are_served_and_rows_written_after_it_returns(hosts, backend, pg_server):
    proxies, _, config = hosts
    prior = usage_json(config)["totals"]["requests"]
    stored = oai(proxies[0]).responses.create(model="gpt-5.5", input="before the outage")
    before = wait_requests(config, prior + 1)["totals"]["requests"]
    assert before == prior + 1
    marks = [len(p.lines) for p in proxies]
    pg_server.stop()
    try:
        served = 0
        for p in proxies:
            t = time.perf_counter()
            c = oai(p).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "while down"}])
            assert c.choices[0].message.content and time.perf_counter() - t < 5
            r = oai(p).responses.create(model="gpt-5.5", input="also while down")  # its booking fails quietly
            assert r.output_text
            served += 2
        with pytest.raises(openai.InternalServerError) as err:  # a lookup: the store's answer, not "not found"
            oai(proxies[1]).responses.create(model="gpt-5.5", input="next", previous_response_id=stored.id)
        assert err.value.status_code == 503 and err.value.code == "store_unavailable"  # answered locally: no ledger row
        for p, mark in zip(proxies, marks, strict=True):
            p.wait_log(LEDGER_DOWN, start=mark)
        time.sleep(2)  # the writers retry a few times while it is down
    finally:
        pg_server.start()
    report = wait_requests(config, before + served)
    assert report["totals"]["requests"] == before + served
    for p, mark in zip(proxies, marks, strict=True):
        p.wait_log(LEDGER_BACK, start=mark)
        lines = p.lines[mark:]
        assert sum(LEDGER_DOWN in line for line in lines) == 1, "\n".join(lines)
        assert sum(LEDGER_BACK in line for line in lines) == 1
        assert not any("Traceback" in line for line in lines)
    # the store is back without a restart: the chain made before the outage goes on
    r = oai(proxies[2]).responses.create(model="gpt-5.5", input="after", previous_response_id=stored.id)
    assert r.output_text == "You said: after" and texts(backend.received[-1].json["input"])[0] == "before the outage"


def test_usage_against_an_unreachable_store_is_one_clear_error(tmp_path, pg_server):
    config = tmp_path / "cli.yaml"
    dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:{pg_server.port + 1}/nowhere"
    config.write_text(yaml.safe_dump({"auth-dir": str(tmp_path / "auth"), "store": dsn}))
    out = usage(config)
    assert out.returncode == 1 and "postgresql://postgres:***@127.0.0.1" in out.stderr
    assert SECRET not in out.stderr + out.stdout and "Traceback" not in out.stderr
