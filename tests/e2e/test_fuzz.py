"""Fuzzed request bodies through the real proxy on both listeners (the base URL; HTTPS_PROXY mode over
HTTP/1.1 and HTTP/2): only 2xx/4xx, errors in the client's format, and no connection to anything but the
fake backend."""

import json
import re
import socket
import ssl

import h2.config
import h2.connection
import h2.events
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
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_text", "image", "tool_result", "weird"])},
    optional={"text": JSON, "image_url": JSON, "source": JSON, "content": JSON},
)
CONTENT = st.text(max_size=20) | st.lists(PART, max_size=3) | JSON
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "bogus"]) | JSON, "content": CONTENT},
    optional={"tool_calls": JSON, "tool_call_id": JSON},
)
OPTIONAL = {
    "stream": st.booleans() | JSON,
    "tools": JSON | st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": JSON}), max_size=2),
    "tool_choice": JSON,
    "response_format": JSON,
    "reasoning_effort": JSON,
    "reasoning": JSON,
    "n": JSON,
    "temperature": JSON,
    "max_tokens": JSON,
    "thinking": JSON,
    "system": CONTENT,
    "instructions": JSON,
}
BODIES = {
    "/v1/chat/completions": st.fixed_dictionaries({"model": MODEL, "messages": st.lists(MESSAGE, max_size=3) | JSON}, optional=OPTIONAL),
    "/v1/responses": st.fixed_dictionaries(
        {"model": MODEL, "input": st.text(max_size=20) | st.lists(MESSAGE, max_size=3) | JSON}, optional=OPTIONAL
    ),
    "/v1/messages": st.fixed_dictionaries(
        {"model": MODEL, "max_tokens": st.integers(1, 100) | JSON, "messages": st.lists(MESSAGE, max_size=3) | JSON},
        optional={k: v for k, v in OPTIONAL.items() if k != "max_tokens"},
    ),
    "/v1/messages/count_tokens": st.fixed_dictionaries(
        {"model": MODEL, "messages": st.lists(MESSAGE, max_size=3) | JSON}, optional=OPTIONAL
    ),
}
RAW = st.binary(max_size=40) | st.just(b"") | JSON.map(lambda v: json.dumps(v).encode())


TRANSPORTS = ["base_url_h1", "https_proxy_h1", "https_proxy_h2"]


def api_host(path: str) -> str:
    return "api.anthropic.com" if path.startswith("/v1/messages") else "api.openai.com"


class H2Tunnel:
    """HTTP/2 as HTTPS_PROXY clients get it: CONNECT through the regular proxy, TLS with the mitmproxy CA,
    h2 chosen by ALPN; one connection, a stream per request. (httpx offers http/1.1 first, and its
    http1=False speaks h2 prior knowledge to the proxy itself, which mitmproxy does not take.)"""

    def __init__(self, proxy, host: str) -> None:
        sock = socket.create_connection(("127.0.0.1", proxy.regular_port), timeout=30)
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context(cafile=proxy.ca)
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(sock, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.host = host
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        sid = self.conn.get_next_available_stream_id()
        fields = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self.host),
            (":path", path),
            ("content-length", str(len(content))),
            *headers.items(),
        ]
        self.conn.send_headers(sid, fields, end_stream=not content)
        if content:
            self.conn.send_data(sid, content, end_stream=True)  # fuzz bodies fit the initial window
        self.sock.sendall(self.conn.data_to_send())
        status, body = 0, b""
        while True:
            data = self.sock.recv(65536)
            assert data, "the proxy closed the HTTP/2 connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    raise AssertionError(f"stream reset by the proxy: {event.error_code!r}")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    self.sock.sendall(self.conn.data_to_send())
                    return status, body
            self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def fuzz_post(proxy):
    """post(transport, path, content, headers) -> (status, body): the base URL, or HTTPS_PROXY mode to
    api.openai.com / api.anthropic.com over HTTP/1.1 or HTTP/2."""
    ctx = ssl.create_default_context(cafile=proxy.ca)
    base = httpx.Client(base_url=proxy.base_url, timeout=30)
    via_proxy = httpx.Client(proxy=proxy.proxy_url, verify=ctx, timeout=30)
    tunnels: dict[str, H2Tunnel] = {}

    def post(transport: str, path: str, content: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if transport == "base_url_h1":
            r = base.post(path, content=content, headers=headers)
        elif transport == "https_proxy_h1":
            r = via_proxy.post(f"https://{api_host(path)}{path}", content=content, headers=headers)
        else:
            host = api_host(path)
            if host not in tunnels:
                tunnels[host] = H2Tunnel(proxy, host)
            return tunnels[host].post(path, content, headers)
        assert r.http_version == "HTTP/1.1"
        return r.status_code, r.content

    yield post
    base.close()
    via_proxy.close()
    for tunnel in tunnels.values():
        tunnel.close()


@pytest.fixture(scope="module")
def log_mark(proxy) -> int:
    """Where this module's part of the (session-wide) proxy log starts."""
    return len(proxy.lines)


def check(status: int, payload: bytes, path: str) -> None:
    assert status < 500 and status not in (300, 301, 302), (status, payload[:300])
    if status >= 400:
        body = json.loads(payload)
        if path.startswith("/v1/messages"):
            assert body["type"] == "error" and isinstance(body["error"]["message"], str) and body["error"]["type"]
        else:
            assert isinstance(body["error"]["message"], str) and body["error"]["type"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", sorted(BODIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bodies_get_2xx_or_a_client_format_4xx(fuzz_post, log_mark, backend, path, transport, data):
    body = data.draw(BODIES[path] | RAW.map(lambda b: {"__raw__": b}))
    content = body["__raw__"] if "__raw__" in body else json.dumps(body).encode()
    status, payload = fuzz_post(transport, path, content, {"content-type": "application/json"})
    check(status, payload, path)


VALID = {
    "/v1/chat/completions": {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "gpt-5.5", "input": "hi"},
    "/v1/messages": {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]},
}


def test_fuzzing_never_left_the_machine(proxy, backend_server, backend, fuzz_post, log_mark):
    """Self-sufficient: its own forwarded requests (streamed ones through mitmproxy's upstream connection,
    the others through cliproxy's HTTP client) on every transport, then every upstream connection mitmproxy
    made during this module (fuzzing included, when it ran first) went to the fake backend."""
    sent = 0
    for transport in TRANSPORTS:
        for path, body in VALID.items():
            for stream in (False, True):
                status, payload = fuzz_post(
                    transport, path, json.dumps({**body, "stream": stream}).encode(), {"content-type": "application/json"}
                )
                assert status == 200, (transport, path, stream, payload[:300])
                sent += 1
    assert len(backend.received) == sent
    connects = re.findall(r"server connect (\S+)", "\n".join(proxy.lines[log_mark:]))
    assert connects, "the streamed requests should have reached the fake backend through mitmproxy"
    assert set(connects) == {f"127.0.0.1:{backend_server.port}"}
