"""The per-request shortcuts give what the general calls give.

`aim` sets a request's target as mitmproxy's `req.url = ...` does (the URL parsed once per backend
URL); `header_map` reads a response's headers as `Headers.get` reads them (in one pass); the
prompt-cache key is derived as before (the same opening keeps hitting the same cache across versions).
"""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from cliproxy.addons.hooks.codex_upstream import aim, header_map
from cliproxy.addons.translate import codex_body


def _request(http2: bool, host_header: bool) -> http.Request:
    headers = http.Headers(content_type="application/json", **({"host": "api.openai.com"} if host_header else {}))
    req = tutils.treq(method=b"POST", host="api.openai.com", port=443, scheme=b"https", path=b"/v1/chat/completions?x=1", headers=headers)
    if http2:
        req.http_version = "HTTP/2.0"
        req.authority = "api.openai.com"
    return req


def _target(req: http.Request) -> tuple:
    return (req.url, req.scheme, req.host, req.port, req.path, req.authority, req.data.authority, req.headers.fields)


@pytest.mark.parametrize(
    "target",
    [
        "https://chatgpt.com/backend-api/codex/responses",
        "http://127.0.0.1:9/backend-api/codex/responses",
        "http://localhost:8080/v1/responses?client_version=1",
        "https://xn--bcher-kva.example/codex",
        "https://[::1]:8443/codex",
    ],
)
@pytest.mark.parametrize("http2", [False, True])
@pytest.mark.parametrize("host_header", [True, False])
def test_aim_sets_what_the_url_setter_sets(target, http2, host_header):
    expected, got = _request(http2, host_header), _request(http2, host_header)
    expected.url = target
    aim(got, target)
    aim(got, target)  # again, from the cache: the same
    assert _target(got) == _target(expected)


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Content-Type", b"text/event-stream"), (b"X-Request-Id", b"req_1"), (b"x-codex-primary-used-percent", b"12.5")],
        [(b"x-codex-primary-used-percent", b"12"), (b"X-Codex-Primary-Used-Percent", b"13")],  # repeated: joined
        [(b"x-note", "naïve".encode()), (b"x-raw", b"\xff\xfe")],  # UTF-8, and bytes that are not
        [],
    ],
)
def test_header_map_reads_what_headers_get_reads(fields):
    headers = http.Headers(fields)
    got = header_map(headers)
    names = {name.decode().lower() for name, _ in fields} | {"absent"}
    assert {n: got.get(n) for n in names} == {n: headers.get(n) for n in names}
    assert len(got) == len(names) - 1


@pytest.mark.parametrize(
    "parts",
    [
        ("chat", [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]),
        ("messages", "session-1", [{"role": "user", "content": "é 😀", "b": 1, "a": [None, True, 1.5]}]),
        ("responses", "", [{"z": object}]),  # not JSON: str() of it, as before
    ],
)
def test_the_prompt_cache_key_is_derived_as_before(parts):
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    expected = str(uuid.uuid5(codex_body._CACHE_NAMESPACE, digest))
    assert codex_body.derived_cache_key(*parts) == expected
    assert codex_body.derived_cache_key(*parts) == expected  # from the cache
