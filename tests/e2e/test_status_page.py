"""The status page through the real proxy: after a scripted mix of SDK requests (two accounts, two models,
one error), `/cliproxy/status.json` tells it, and the page opened in real headless Chromium shows an account
row per account and charts with data points (a screenshot is saved in the test's temp dir). Also: who may
see it (loopback, or a client key; the Host check against DNS rebinding), that no token ever appears on it,
and that the regular (HTTPS_PROXY) listener has no page.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from cliproxy.auth.store import fingerprint
from tests.conftest import CLIENT_KEY
from tests.e2e.test_access import own_address
from tests.e2e.test_usage_ledger import ledger_rows
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import detail, usage_limit
from tests.proxyproc import start_proxy

KEY = "sk-status-remote"
CHROMIUM = "/usr/bin/chromium"
ACCOUNTS = (("ana@example.com", "acct-ana-0001", "plus"), ("bo@example.com", "acct-bo-0002", "pro"))
MODELS = ("gpt-5.5", "gpt-6-sol")
REQUESTS = 7  # the scripted mix below: 6 served, 1 refused by the backend


@pytest.fixture(scope="module")
def status_proxy(tmp_path_factory, backend_server):
    """Two accounts, a client key for peers beyond loopback, both listeners on every interface."""
    home = tmp_path_factory.mktemp("status")
    files = [mint_account(home / "auth", email, account_id=acct, plan=plan) for email, acct, plan in ACCOUNTS]
    config = {
        "auth-dir": str(home / "auth"),
        "codex-base-url": backend_server.base_url,
        "oauth-issuer": "http://127.0.0.1:9",
        "api-keys": [KEY],
    }
    p = start_proxy(home, config, listen_host="0.0.0.0")
    p.home, p.files = home, files
    yield p
    p.stop()


@pytest.fixture(scope="module")
def traffic(status_proxy, backend_server):
    """The scripted mix, run once for the module: chat, responses and messages on two models, one 400."""
    backend_server.replies.clear()
    oa = openai.OpenAI(base_url=status_proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    an = anthropic.Anthropic(base_url=status_proxy.base_url, api_key="sk-another-client", max_retries=0)
    told = 0
    for model in (*MODELS, *MODELS):
        c = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        told += c.usage.total_tokens
    r = oa.responses.create(model=MODELS[1], input="hello")
    told += r.usage.total_tokens
    m = an.messages.create(model=MODELS[0], max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    told += m.usage.input_tokens + m.usage.cache_read_input_tokens + m.usage.output_tokens
    backend_server.replies.append(detail(400, "Unsupported parameter: frobnicate"))
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model=MODELS[0], messages=[{"role": "user", "content": "hi"}])
    rows = ledger_rows(status_proxy.home / "auth", REQUESTS)
    assert len(rows) == REQUESTS and {r["account"] for r in rows} == {a[0] for a in ACCOUNTS}  # round-robin used both
    return {"rows": rows, "tokens": told}


def get(proxy, path: str, **kw) -> httpx.Response:
    return httpx.get(proxy.base_url + path, timeout=20, **kw)


def test_status_json_tells_the_pool_and_the_mix(status_proxy, traffic):
    r = get(status_proxy, "/cliproxy/status.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.headers["cache-control"] == "no-store"
    s = r.json()
    assert set(s) >= {"version", "generated_at", "range", "accounts", "counts", "ledger", "totals", "series", "recent_errors"}
    assert s["range"]["name"] == "24h" and len(s["range"]["buckets"]) == 24 and s["range"]["step_seconds"] == 3600
    accounts = {a["label"]: a for a in s["accounts"]}
    assert set(accounts) == {"ana@example.com", "bo@example.com"}
    assert {a["plan"] for a in s["accounts"]} == {"plus", "pro"} and s["counts"] == {"serving": 2, "resting": 0, "needs login": 0}
    for a in s["accounts"]:  # the fake's x-codex-* headers: 5h 12.5 %, week 40 %
        assert a["state"] == "serving" and a["kind"] == "chatgpt" and a["rests"] == []
        assert [(w["name"], w["used_percent"]) for w in a["windows"]] == [("5h", 12), ("week", 40)]
        assert all(w["resets_at"] > time.time() for w in a["windows"])
    assert s["ledger"] is True
    assert s["totals"]["requests"] == REQUESTS and s["totals"]["errors"] == 1
    assert s["totals"]["input_tokens"] + s["totals"]["output_tokens"] == traffic["tokens"]  # what the SDKs were told
    per_account = {k: sum(v) for k, v in s["series"]["account"]["requests"].items()}
    assert per_account == {a: sum(1 for r in traffic["rows"] if r["account"] == a) for a in accounts}
    assert set(s["series"]["model"]["requests"]) == set(MODELS)
    assert sum(sum(v) for v in s["series"]["model"]["tokens"].values()) == traffic["tokens"]
    assert [e["status"] for e in s["recent_errors"]] == [400] and "frobnicate" in s["recent_errors"][0]["error"]
    short = get(status_proxy, "/cliproxy/status.json?range=1h").json()["range"]
    assert short["name"] == "1h" and short["step_seconds"] == 300 and len(short["buckets"]) == 12
    assert get(status_proxy, "/cliproxy/status.json?range=forever").json()["range"]["name"] == "24h"  # unknown: the default


def test_page_answers_with_a_strict_policy(status_proxy, traffic):
    r = get(status_proxy, "/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)[1]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert f'<script nonce="{nonce}">' in r.text and "fetch(location.href" in r.text  # it refreshes itself
    assert "http://" not in r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from elsewhere
    assert r.text.count('<tr class="account"') == 2 and "frobnicate" in r.text
    assert get(status_proxy, "/").headers["content-security-policy"] != csp  # a new nonce each time
    head = httpx.head(status_proxy.base_url + "/", timeout=10)
    assert head.status_code == 200 and head.content == b""  # HEAD / is still the cheap ping


def test_no_token_on_the_page_nor_in_the_json(status_proxy, traffic):
    secrets = {CLIENT_KEY, KEY, "sk-another-client"}
    for path in status_proxy.files:
        data = json.loads(Path(path).read_text())
        secrets |= {data[k] for k in ("access_token", "refresh_token", "id_token")}
    for url in ("/", "/?range=1h", "/cliproxy/status.json", "/cliproxy/status.json?range=30d"):
        text = get(status_proxy, url).text
        for secret in secrets:
            assert secret not in text, url
            for part in (secret[:24], secret[-24:]):  # nor a piece of one (JWT header/signature)
                assert len(secret) < 30 or part not in text, url


def test_peers_beyond_loopback_need_a_key(status_proxy, traffic):
    addr = own_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback address to play a LAN client from")
    base = f"http://{addr}:{status_proxy.base_port}"
    for path in ("/", "/cliproxy/status.json"):
        r = httpx.get(base + path, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
        r = httpx.get(base + path, headers={"authorization": "Bearer wrong"}, timeout=10)
        assert r.status_code == 401, path
        assert httpx.get(base + path + "?key=" + KEY, timeout=10).status_code == 401  # never a key from the URL
        r = httpx.get(base + path, headers={"authorization": f"Bearer {KEY}"}, timeout=10)
        assert r.status_code == 200, path


@pytest.mark.parametrize(
    ("host", "key", "allowed"),
    [
        ("127.0.0.1", None, True),
        ("localhost", None, True),
        ("[::1]", None, True),
        ("rebound.attacker.example", None, False),  # DNS rebinding: a loopback peer with a foreign name
        ("my-box.lan", None, False),
        ("my-box.lan", KEY, True),  # a named host is fine with a key
    ],
)
def test_host_check_against_dns_rebinding(status_proxy, traffic, host, key, allowed):
    headers = {"host": f"{host}:{status_proxy.base_port}"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    for path in ("/", "/cliproxy/status.json"):
        r = get(status_proxy, path, headers=headers)
        if allowed:
            assert r.status_code == 200, (path, r.text[:300])
        else:
            assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed", path
            assert "localhost" in r.json()["error"]["message"] and "frobnicate" not in r.text


def test_https_proxy_mode_has_no_status_page(status_proxy, traffic):
    with httpx.Client(proxy=status_proxy.proxy_url, verify=status_proxy.ca, timeout=20) as client:
        for path in ("/", "/cliproxy/status.json"):
            r = client.get("https://api.openai.com" + path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
        models = client.get("https://api.openai.com/v1/models", headers={"authorization": "Bearer x"})
        assert models.status_code == 200 and models.json()["object"] == "list"  # the API there as before


def test_resting_and_needs_login_accounts_are_shown_as_such(tmp_path, backend):
    """fill-first: the first account meets its usage limit (429) and rests, the request fails over to the second;
    the third's file says it needs a new login."""
    auth = tmp_path / "auth"
    for email, acct in (("ana@example.com", "acct-a"), ("bo@example.com", "acct-b"), ("cy@example.com", "acct-c")):
        path = mint_account(auth, email, account_id=acct)
    data = json.loads(path.read_text())
    data["cliproxy_status"] = {"state": "needs-login", "reason": "refresh_token_reused", "credential": fingerprint(data["refresh_token"])}
    path.write_text(json.dumps(data))
    config = {
        "auth-dir": str(auth),
        "codex-base-url": backend.base_url,
        "oauth-issuer": "http://127.0.0.1:9",
        "routing": {"strategy": "fill-first"},
    }
    proxy = start_proxy(tmp_path, config)
    try:
        backend.replies.append(usage_limit(resets_in=3600))
        oa = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        s = get(proxy, "/cliproxy/status.json").json()
        states = {a["label"]: a for a in s["accounts"]}
        assert {k: a["state"] for k, a in states.items()} == {
            "ana@example.com": "resting",
            "bo@example.com": "serving",
            "cy@example.com": "needs login",
        }
        (ana_rest,) = states["ana@example.com"]["rests"]
        assert ana_rest["model"] == "gpt-5.5" and ana_rest["reason"] == "usage limit" and 3500 < ana_rest["until"] - time.time() <= 3600
        assert s["counts"] == {"serving": 1, "resting": 1, "needs login": 1}
        page = get(proxy, "/").text
        assert re.search(
            r'data-state="resting"[^>]*><td>ana@example.com</td>.*?resting for (59m|1h), until [^<]* \(usage limit on gpt-5.5\)', page
        )
        assert "needs login: run cliproxy login" in page and "1 serving · 1 resting · 1 need login" in page
    finally:
        proxy.stop()


def run_chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-proxy-server",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_page_in_headless_chromium(status_proxy, traffic, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) to run this test")
    url = status_proxy.base_url + "/"
    dom = run_chromium(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    rows = re.findall(r'<tr class="account" data-state="([^"]+)"', html)
    assert rows == ["serving", "serving"]  # one row per account
    for chart in ("chart-requests-by-account", "chart-tokens-by-account", "chart-requests-by-model", "chart-tokens-by-model"):
        svg = re.search(rf'<svg id="{chart}".*?</svg>', html, re.S)
        assert svg is not None, chart
        values = [int(v) for v in re.findall(r'<rect class="bar"[^>]*data-value="(\d+)"', svg[0])]
        assert values and all(v > 0 for v in values), chart
        if "requests" in chart:
            assert sum(values) == REQUESTS, chart
        else:
            assert sum(values) == traffic["tokens"], chart
    series = set(re.findall(r'data-series="([^"]+)"', html))
    assert {"ana@example.com", "bo@example.com", *MODELS} <= series
    assert len(re.findall(r'class="meter"', html)) == 4  # 5h and week bars for each account
    assert "frobnicate" in html and html.count('class="error-row"') == 1
    later = run_chromium(["--virtual-time-budget=25000", "--dump-dom", url], tmp_path)  # the page's timers run
    refreshes = re.search(r'<main data-generated="\d+" data-refreshes="(\d+)"', later.stdout)
    assert refreshes and int(refreshes[1]) >= 1, later.stdout[:500]  # it re-read itself and swapped in the new <main>
    assert later.stdout.count('<tr class="account"') == 2
    shot = tmp_path / "status.png"
    png = run_chromium([f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars", url], tmp_path)
    assert png.returncode == 0 and shot.exists(), png.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"status page screenshot: {shot}")
