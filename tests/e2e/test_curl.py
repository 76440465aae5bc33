"""curl through the proxy: HTTP/1.1 by base URL, HTTP/1.1 and HTTP/2 through HTTPS_PROXY."""

import json
import shutil
import subprocess

import pytest

from tests.fakes.codex_backend import sse, turn

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
BODY = json.dumps({"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]})


def curl(*args):
    return subprocess.run(["curl", "-sS", "--no-buffer", "--max-time", "30", *args], capture_output=True, text=True, timeout=60)


def deltas(out: str) -> str:
    text = ""
    for line in out.splitlines():
        if line.startswith("data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            text += (choices[0].get("delta") or {}).get("content") or ""
    return text


def test_curl_base_url_stream(proxy, backend):
    backend.replies.append(sse(turn().text("curl says hi").events()))
    r = curl(f"{proxy.base_url}/v1/chat/completions", "-H", "content-type: application/json", "-d", BODY)
    assert r.returncode == 0, r.stderr
    assert deltas(r.stdout) == "curl says hi" and r.stdout.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_https_proxy_stream(proxy, backend, version):
    backend.replies.append(sse(turn().text("over TLS").events()))
    r = curl(
        version,
        "-x",
        proxy.proxy_url,
        "--cacert",
        proxy.ca,
        "https://api.openai.com/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "-H",
        "authorization: Bearer sk-x",
        "-d",
        BODY,
        "-w",
        "\n%{http_version}",
    )
    assert r.returncode == 0, r.stderr
    assert deltas(r.stdout) == "over TLS"
    assert r.stdout.rstrip().splitlines()[-1] == ("2" if version == "--http2" else "1.1")
