"""cliproxy under the real mitmweb, looked at with real headless Chromium (playwright-core from npm): the flow
list of a scripted session shows the clients' paths and the comments without any clicking, updates while
a stream runs, marks a failed stream, and a replay re-runs the client's request through cliproxy.

Screenshots are left in the test's tmp dir (`flows.png`, `running.png`, `flows-replayed.png`)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import sse, turn, usage_limit
from tests.npmtools import npm_modules
from tests.proxyproc import ADDON, Proxy, free_port, start_proxy

CHROMIUM = Path("/usr/bin/chromium")
MITMWEB = Path(sys.executable).parent / "mitmweb"
SCRIPT = Path(__file__).with_name("mitmweb_page.mjs")
_WEB_URL = re.compile(r"Web server listening at (http://\S+)")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")


def start_mitmweb(tmp: Path, proxy_home: Path, backend_url: str) -> tuple[Proxy, str]:
    """mitmweb with the addon; returns it and the web UI's URL with its token (from mitmweb's own log line)."""
    proxy = start_proxy(
        tmp,
        {"auth-dir": str(proxy_home / "auth"), "codex-base-url": backend_url, "oauth-issuer": "http://127.0.0.1:9"},
        "--set",
        "web_open_browser=false",
        "--set",
        f"web_port={free_port()}",
        launcher=(str(MITMWEB), "-s", str(ADDON)),
    )
    line = proxy.wait_log("Web server listening at", timeout=20)
    match = _WEB_URL.search(line)
    assert match, line
    return proxy, match[1]


def page(tmp: Path, url: str, screenshot: str, wait_for: str = "", replay_row: str = "", detail_row: str = "", meanwhile=None) -> dict:
    """Run the page script (headless Chromium through playwright-core); its JSON line, parsed. `meanwhile`
    runs once the page is open (traffic the open page must follow)."""
    modules = npm_modules("playwright-core")
    script = tmp / SCRIPT.name
    if not script.exists():
        shutil.copyfile(SCRIPT, script)
        (tmp / "node_modules").symlink_to(modules, target_is_directory=True)
    proc = subprocess.Popen(
        ["node", str(script), url, str(tmp / screenshot), wait_for, replay_row, detail_row],
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp)},
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() == "ready" and meanwhile is not None:
            meanwhile()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def api(url: str, path: str) -> httpx.Response:
    """mitmweb's own API (what the page is fed), with its token."""
    base, token = url.split("/?token=")
    r = httpx.get(f"{base}{path}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r


def api_flows(url: str) -> list[dict]:
    return api(url, "/flows").json()


def view_text(url: str, flow_id: str, message: str, view: str) -> dict:
    """A content view of a flow's request or response, as mitmweb's page fetches it."""
    return api(url, f"/flows/{flow_id}/{message}/content/{view.replace(' ', '%20')}.json").json()


def row(rows: list[dict], path: str, comment: str = "") -> dict:
    found = [r for r in rows if r["path"] and r["path"].endswith(path) and comment in (r["comment"] or "")]
    assert found, f"no row {path} with {comment!r} in {json.dumps(rows, indent=1, ensure_ascii=False)}"
    return found[-1]


def test_a_session_in_mitmweb(tmp_path, backend_server, backend):
    mint_account(tmp_path / "auth")  # its own account: the 429 below leaves it resting
    proxy, url = start_mitmweb(tmp_path / "p", tmp_path, backend_server.base_url)
    try:
        chat = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        claude = anthropic.Anthropic(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)

        # A slow stream: the list shows it, with its comment, while it runs.
        backend.replies.append(sse(turn().text("one two three four five six seven").events(), chunking="frames", delay=0.4))
        slow = threading.Thread(
            target=lambda: list(chat.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "slow"}], stream=True))
        )
        running = page(tmp_path, url, "running.png", wait_for="streaming…", meanwhile=slow.start)
        slow.join(30)
        live = row(running["before"], "/v1/chat/completions", "streaming…")
        assert live["path"] == f"{proxy.base_url}/v1/chat/completions", live  # the client's URL, not the backend's
        assert "dev@example.com" in live["comment"] and "ttfb" in live["comment"]
        assert live["time"] == "..."  # mitmweb's mark of a flow not finished

        backend.replies.append(sse(turn().reasoning("Think.").text("Streamed words.").events()))
        list(chat.chat.completions.create(model="gpt-5.5(high)", messages=[{"role": "user", "content": "hi"}], stream=True))
        with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hello"}]) as s:
            s.until_done()
        backend.replies.append(sse(turn().text("this answer is cut off").events(), cut_after=5))
        with pytest.raises(openai.APIError):
            list(chat.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "cut"}], stream=True))
        chat.models.list()

        shown = page(tmp_path, url, "flows.png", wait_for="stream error", replay_row="gpt-5.5(high) → gpt-5.5")
        seen = shown["before"]
        assert all(r["commentVisible"] for r in seen), seen  # the comment column is on, and wide enough to read
        ok = row(seen, "/v1/chat/completions", "gpt-5.5(high) → gpt-5.5")
        assert ok["path"] == f"{proxy.base_url}/v1/chat/completions" and ok["status"] == "200"
        assert "dev@example.com" in ok["comment"] and "via base URL" in ok["comment"] and ok["marker"] == ""
        assert ok["time"] and "..." not in ok["time"]  # not "...": timestamp_end set though the SDK hung up after [DONE]
        messages = row(seen, "/v1/messages", "claude-sonnet-4-5 →")
        assert "42→17 tok" in messages["comment"]
        cut = row(seen, "/v1/chat/completions", "stream error")
        assert cut["status"] == "200" and cut["marker"] == "❌" and cut["comment"].startswith("✗ ")
        models = row(seen, "/v1/models")
        assert models["comment"] == "models · answered by cliproxy · via base URL" and models["path"].startswith(proxy.base_url)
        assert "backend-api" not in json.dumps(seen) and "cliproxy.invalid" not in json.dumps(seen)

        # The replay (the good chat flow selected, `r` pressed): cliproxy served the client's request again.
        again = row(shown["after"], "/v1/chat/completions", "(replayed)")
        assert again["status"] == "200" and again["path"] == f"{proxy.base_url}/v1/chat/completions", again
        assert "gpt-5.5(high) → gpt-5.5" in again["comment"]
        redone = next(f for f in api_flows(url) if "(replayed)" in f["comment"])
        assert redone["is_replay"] == "request" and redone["request"]["path"] == "/v1/chat/completions"
        assert backend.received[-1].json["input"][-1]["content"][0]["text"] == "hi"  # the client's prompt, sent again

        # The upstream side, one click away: the views mitmweb's page fetches.
        good = redone  # replayed in place: the flow now holds the new run
        auto = view_text(url, good["id"], "response", "auto")
        assert auto["view_name"] == "cliproxy conversation" and "[user] hi" in auto["text"] and "\n[assistant] " in auto["text"]
        sent = view_text(url, good["id"], "request", "cliproxy upstream request")["text"]
        assert sent.startswith(f"POST {backend_server.base_url}/responses") or "/responses\n" in sent.splitlines()[0] + "\n", sent[:300]
        assert "authorization: Bearer …(redacted)" in sent and '"reasoning"' in sent
        got = view_text(url, good["id"], "response", "cliproxy upstream answer")["text"]
        assert got.startswith("200\n") and "event: response.completed" in got

        # An image answer: added to the list as a flow whose Response tab is the picture itself.
        r = httpx.post(proxy.base_url + "/v1/images/generations", json={"prompt": "a red square"}, timeout=30)
        assert r.status_code == 200
        png = base64.b64decode(r.json()["data"][0]["b64_json"])
        image = next(f for f in api_flows(url) if f["request"]["host"] == "cliproxy")
        assert image["request"]["path"].endswith("/1.png") and image["response"]["headers"] == [
            ["content-type", "image/png"],
            ["content-length", str(len(png))],
        ]
        assert api(url, f"/flows/{image['id']}/response/content.data").content == png
        images = next(f for f in api_flows(url) if f["request"]["path"] == "/v1/images/generations")
        assert "b64_json" not in images["comment"] and "[image 1] PNG" in view_text(url, images["id"], "response", "auto")["text"]

        # A 429: the comment says which account rests, why and until when.
        backend.replies.append(usage_limit(resets_in=3600))
        with pytest.raises(openai.RateLimitError):
            chat.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "limit"}])
        last = page(tmp_path, url, "flows-429.png", wait_for="usage_limit_reached", detail_row="claude-sonnet-4-5 →")
        limited = row(last["before"], "/v1/chat/completions", "usage_limit")
        assert limited["status"] == "429" and limited["comment"].startswith("✗ 429 dev@example.com usage_limit_reached until "), limited
        assert "[assistant] You said: hello" in last["detail"] and "── the client sent POST /v1/messages" in last["detail"]
        limited_flow = next(f for f in api_flows(url) if "usage_limit_reached" in f["comment"])
        assert '"usage_limit_reached"' in view_text(url, limited_flow["id"], "response", "cliproxy upstream answer")["text"]
    finally:
        proxy.stop()
